"""paho's MQTT client, reading its socket in large chunks instead of a few bytes at a time.

paho reads each packet with three or more `recv` calls (the command byte, each byte of the length, then the
rest) after a `select`: at 16,000 msg/s that is some 60,000 system calls a second, each of which lets go of
the interpreter lock and waits to take it back from the pipeline thread. This client reads up to
CHUNK_BYTES at a time and serves paho's small reads from memory. Draining a queue of QoS 1 telemetry, it
costs 17-21 us of CPU a message against paho's 32-35, nearly all of the difference system time
(`benchmarks/mqtt_reads.py`).

`select` cannot see bytes already read into memory, so `loop_read` goes on through every whole packet in
the chunk before it returns; after MAX_PACKETS_PER_READ packets it stops taking new chunks (paho's loop then
sends what it has queued and its keep-alives) and reads only what the chunk in hand still holds, so that
nothing is left in memory when paho waits on the socket again. paho's own loops (`loop`, `loop_forever`,
`loop_start`) work unchanged. It relies on paho 2.x reading through `Client._sock_recv`;
tests/e2e/test_chunked_reads.py fails if that changes.

With `on_received` set, the QoS 0 and 1 PUBLISH packets that lie whole in the chunk (MQTT 3.1.1) are taken
from it directly and handed over as (topic, payload, qos, dup), each QoS 1 one acknowledged as paho does; paho
reads every other packet (its acknowledgements, pings, QoS 2, a packet split across chunks, one it would find
malformed). paho's own path for a PUBLISH builds a bytearray of it from several reads, a packet object and a
message object, takes three locks and walks its topic matcher: a drain costs 7-9 us of CPU a message this way
against 21-23 (`benchmarks/mqtt_reads.py` has both paths), and the gateway's link thread at 8,000 msg/s 10 % of
a core against 24 %.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

CHUNK_BYTES = 65_536
MAX_PACKETS_PER_READ = 1_000
PUBLISH = 0x30
QOS_BITS = 0x06

Received = Callable[[str, bytes, int, bool], None]  # topic, payload, qos, dup


class ChunkedReadClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._position = 0
        self._chunk_socket: object = None  # the socket the chunk came from: a new connection starts empty
        self._new_chunks = True
        self.chunks_read = 0  # socket reads that filled the chunk (a test sees that they are few)
        self.on_received: Received | None = None  # the PUBLISH packets read here, past paho's own path
        self.taken_directly = 0  # PUBLISH packets handed to on_received (a test sees that it is used)

    @property
    def buffered(self) -> bool:
        """Bytes read from the socket that paho has not taken yet."""
        return self._chunk_socket is self._sock and self._position < len(self._chunk)

    def _sock_recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes, from the chunk in hand; when it is used up, from a new chunk (paho's own
        read, so its handling of TLS and closed sockets is kept)."""
        if self._chunk_socket is not self._sock:
            self._chunk, self._position, self._chunk_socket = b"", 0, self._sock
        if self._position >= len(self._chunk):
            if not self._new_chunks:
                return super()._sock_recv(bufsize)
            self._chunk = super()._sock_recv(max(bufsize, CHUNK_BYTES))  # may raise BlockingIOError: none yet
            self._position = 0
            self.chunks_read += 1
        start = self._position
        self._position = min(start + bufsize, len(self._chunk))
        return self._chunk[start:self._position]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's read, repeated while whole packets wait in the chunk (paho reads one packet per `select`)."""
        self._new_chunks = True
        rc = super().loop_read(max_packets)
        packets = 1
        while rc == mqtt.MQTT_ERR_SUCCESS and self.buffered:
            if packets >= MAX_PACKETS_PER_READ:
                self._new_chunks = False  # finish the chunk in hand; what is still on the socket, select sees
            if self.on_received is not None and self._in_packet["command"] == 0:  # between two packets
                packets += self._take_publishes(self.on_received)
                if not self.buffered:
                    break
            rc = super().loop_read(max_packets)
            packets += 1
        self._new_chunks = True
        return rc

    def _take_publishes(self, received: Received) -> int:
        """Hand over the whole QoS 0 and 1 PUBLISH packets at the chunk's position, up to the first other
        packet (or one not whole in the chunk); how many."""
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            return 0  # its properties: paho reads them
        sock, chunk, position = self._sock, self._chunk, self._position
        end, taken = len(chunk), 0
        while position < end:
            command = chunk[position]
            qos = (command & QOS_BITS) >> 1
            if command & 0xF0 != PUBLISH or qos > 1:
                break
            length, shift, index = 0, 0, position + 1
            while index < end and shift < 28:  # the remaining length: at most 4 bytes of 7 bits
                byte = chunk[index]
                index += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # cut off by the chunk's end, or too long (paho finds it malformed)
            packet_end = index + length
            if packet_end > end or length < 2:
                break
            topic_end = index + 2 + (chunk[index] << 8 | chunk[index + 1])
            body = topic_end + 2 * qos
            if topic_end == index + 2 or body > packet_end:  # an empty topic, or longer than the packet
                break
            try:
                topic = chunk[index + 2:topic_end].decode("utf-8")
            except UnicodeDecodeError:
                break
            position = self._position = packet_end
            received(topic, chunk[body:packet_end], qos, bool(command & 0x08))
            taken += 1
            self.taken_directly += 1
            if self._sock is not sock:
                return taken  # the callback connected again: the rest of this chunk belongs to the old socket
            if qos and not self._manual_ack:
                self._send_puback(chunk[topic_end] << 8 | chunk[topic_end + 1])
        if taken:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
        return taken
