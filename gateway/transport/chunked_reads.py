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
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK_BYTES = 65_536
MAX_PACKETS_PER_READ = 1_000


class ChunkedReadClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._position = 0
        self._chunk_socket: object = None  # the socket the chunk came from: a new connection starts empty
        self._new_chunks = True
        self.chunks_read = 0  # socket reads that filled the chunk (a test sees that they are few)

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
            rc = super().loop_read(max_packets)
            packets += 1
        self._new_chunks = True
        return rc
