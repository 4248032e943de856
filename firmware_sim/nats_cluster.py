"""A NATS cluster on loopback for tests and benchmarks: N nodes of Debian's nats-server with the MQTT listener,
JetStream and the partition mapping of gateway/cluster/nats_config.py; any node can be killed and restarted."""

from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.localnet import LocalServer, LocalServiceError
from gateway.cluster.nats_config import NatsLayout, node_config

NATS_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server")


def nats_binary() -> str:
    found = shutil.which("nats-server") or next((p for p in NATS_PATHS if Path(p).exists()), None)
    if found is None:
        raise LocalServiceError("nats-server is not installed; `make test` installs it (apt-get install nats-server)")
    return found


def _free_block(ports: int, host: str = "127.0.0.1") -> int:
    """A base port with `ports` free ports after it (NatsLayout numbers node i's ports base + i)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000 - ports)
        try:
            sockets = []
            for port in range(base, base + ports):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise LocalServiceError("no block of free loopback ports for the NATS cluster")


class NatsNode(LocalServer):
    name = "nats"
    start_timeout = 20.0

    def __init__(self, folder: Path, layout: NatsLayout, index: int) -> None:
        self.name = f"nats-n{index}"
        super().__init__(folder)
        self.port = layout.mqtt_port + index  # what "started" waits for: the MQTT listener
        self.config = folder / f"n{index}.conf"
        self.config.write_text(node_config(layout, index))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [nats_binary(), "-c", str(self.config)]

    def kill(self) -> None:
        """SIGKILL: the node dies without a word to its peers or clients."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


class NatsCluster:
    def __init__(self, folder: Path, nodes: int = 3, partitions: int = 2) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        base = _free_block(3 * nodes)
        self.layout = NatsLayout(nodes=nodes, partitions=partitions, client_port=base, route_port=base + nodes,
                                 mqtt_port=base + 2 * nodes, store_dir=str(folder / "jetstream"))
        self.nodes = [NatsNode(folder, self.layout, i) for i in range(nodes)]

    @property
    def url(self) -> str:
        """Every node's MQTT URL, comma-separated: the gateway's broker.url."""
        return self.layout.mqtt_urls()

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self.wait_ready(node, timeout)

    def wait_ready(self, node: NatsNode, timeout: float = 60.0) -> None:
        """Until the node accepts an MQTT session (JetStream must have elected its leaders first)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ready-{node.port}", clean_session=True,
                                 protocol=mqtt.MQTTv311)
            try:
                client.connect("127.0.0.1", node.port, keepalive=10)
                client.loop_start()
                until = time.monotonic() + 5
                while not client.is_connected() and time.monotonic() < until:
                    time.sleep(0.05)
                if client.is_connected():
                    return
                last = "no CONNACK"
            except OSError as exc:
                last = str(exc)
            finally:
                client.disconnect()
                client.loop_stop()
            time.sleep(0.5)
        raise LocalServiceError(f"{node.name} accepts no MQTT session after {timeout:.0f} s ({last}): "
                                + node.log.read_text(errors="replace")[-800:])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
