"""Local processes of the simulated world, shared by tests and benchmarks: loopback ports, a mosquitto broker,
and VictoriaMetrics standing in for InfluxDB (it accepts the InfluxDB v2 write API)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

from gateway.transport.broker import free_port

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")

__all__ = ["MosquittoProcess", "VictoriaMetricsProcess", "free_port", "mosquitto_binary", "stop_process",
           "wait_for_port"]


class LocalServiceError(Exception):
    """A local server could not be found or started; the message says what to install or check."""


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise LocalServiceError(f"nothing is listening on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Terminate, then kill if it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
    if found is None:
        raise LocalServiceError("mosquitto is not installed; `make test` installs it (apt-get install mosquitto)")
    return found


class LocalServer(ABC):
    """A server process on a loopback port with its own log, restartable on the same port."""

    name = "server"
    start_timeout = 10.0

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def start(self) -> None:
        command = self.command()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            wait_for_port(self.port, timeout=self.start_timeout)
        except LocalServiceError as exc:
            self.stop()
            detail = self.log.read_text(errors="replace")[-500:]
            raise LocalServiceError(f"{self.name} did not start on port {self.port}: {detail}") from exc

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None


class MosquittoProcess(LocalServer):
    """A mosquitto broker on a loopback port."""

    name = "mosquitto"

    def __init__(self, folder: Path, extra_config: str = "", persistent: bool = False) -> None:
        """`persistent`: keep sessions and queued messages in `folder` across a restart of the broker."""
        super().__init__(folder)
        self.config = folder / "mosquitto.conf"
        # `user`: mosquitto started as root otherwise drops to the user "mosquitto", who cannot write in `folder`
        persistence = (f"persistence true\npersistence_location {folder}/\nuser {getpass.getuser()}\n"
                       if persistent else "persistence false\n")
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{persistence}"
                               + extra_config)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [mosquitto_binary(), "-c", str(self.config)]


class VictoriaMetricsProcess(LocalServer):
    """Debian's victoria-metrics (it accepts the InfluxDB v2 write API) with its own data folder."""

    name = "victoria-metrics"
    start_timeout = 20.0

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.data = folder / "victoria-metrics-data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(binary).exists():
            raise LocalServiceError("victoria-metrics is not installed; `make test` installs it "
                                    "(apt-get install victoria-metrics)")
        return [binary, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data}",
                "-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.disableCache"]
