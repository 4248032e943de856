"""`appliance-gateway cluster`: N gateway workers on one machine, one per partition, each an ordinary
`appliance-gateway run --partition I --partitions N` child process, restarted when it dies; and a small fleet
view that lists them with what each one's console says.

A supervisor of its own rather than a recipe for systemd alone: the same command works in a terminal, in a
container and under systemd (one unit for the whole set), and the fleet view knows where each worker listens.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.signals import stop_on_signals

log = logging.getLogger("gateway.cluster")

RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
POLL_SECONDS = 2.0


@dataclass
class Worker:
    partition: int
    args: list[str]
    web_port: int
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def rotated(urls: str, partition: int) -> str:
    """Worker I lists node I first, so the workers start spread over the nodes."""
    nodes = [u.strip() for u in urls.split(",") if u.strip()]
    shift = partition % len(nodes)
    return ",".join(nodes[shift:] + nodes[:shift])


def worker_args(config: Path | None, partition: int, partitions: int, broker: str, web_port: int) -> list[str]:
    """Worker I's command line; its console listens on `web_port`."""
    args = [sys.executable, "-m", "gateway", "run", "--partition", str(partition), "--partitions",
            str(partitions), "--broker", rotated(broker, partition), "--web-port", str(web_port)]
    return args + (["--config", str(config)] if config else [])


class Cluster:
    def __init__(self, config: Path | None, partitions: int, broker: str, web_port: int, token: str) -> None:
        """`web_port`: worker I's console listens on web_port + I (its config's web.port is overridden)."""
        self.workers = [Worker(i, worker_args(config, i, partitions, broker, web_port + i), web_port + i)
                        for i in range(partitions)]
        self.token = token
        self._stopping = asyncio.Event()

    async def run(self, fleet_port: int) -> None:
        stop_on_signals(self._stopping.set)
        runner = web.AppRunner(self.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", fleet_port).start()
        log.info("fleet view on http://127.0.0.1:%d/ (%d workers)", fleet_port, len(self.workers))
        try:
            async with asyncio.TaskGroup() as group:
                for worker in self.workers:
                    group.create_task(self._supervise(worker))
                group.create_task(self._poll())
                await self._stopping.wait()
                raise _Stop
        except* _Stop:
            pass
        finally:
            await self._stop_all()
            await runner.cleanup()

    async def _supervise(self, worker: Worker) -> None:
        delay = RESTART_MIN_SECONDS
        while not self._stopping.is_set():
            started = time.monotonic()
            worker.process = await asyncio.create_subprocess_exec(*worker.args)
            worker.starts += 1
            code = await worker.process.wait()
            if self._stopping.is_set():
                return
            delay = RESTART_MIN_SECONDS if time.monotonic() - started > RESTART_MAX_SECONDS else delay
            log.error("worker %d exited with code %s; restarting it in %.0f s", worker.partition, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)

    async def _poll(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                for worker in self.workers:
                    try:
                        async with session.get(worker.console + "/api/status") as response:
                            worker.status, worker.error = await response.json(), ""
                    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        worker.status, worker.error = {}, str(exc) or type(exc).__name__
                await asyncio.sleep(POLL_SECONDS)

    async def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()

    def rows(self) -> list[dict[str, Any]]:
        return [{"partition": w.partition, "pid": w.process.pid if w.process else None, "starts": w.starts,
                 "console": w.console, "error": w.error,
                 **{k: w.status.get(k) for k in ("mqtt_connected", "mqtt_node", "devices", "samples",
                                                 "open_incidents", "tickets_delivered")}}
                for w in self.workers]

    def app(self) -> web.Application:
        app = web.Application()

        def allowed(request: web.Request) -> bool:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.query.get("token")
            return bool(given) and hmac.compare_digest(str(given), self.token)

        async def workers_json(request: web.Request) -> web.Response:
            if not allowed(request):
                raise web.HTTPUnauthorized(text="the owner's token, as for a worker's console")
            return web.json_response(self.rows())

        async def page(request: web.Request) -> web.Response:
            if not allowed(request):
                raise web.HTTPUnauthorized(text="the owner's token, as for a worker's console: /?token=...")
            return web.Response(text=fleet_page(self.rows()), content_type="text/html",
                                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

        app.router.add_get("/", page)
        app.router.add_get("/api/workers", workers_json)
        return app


class _Stop(Exception):
    """Ends the task group when the cluster is asked to stop."""


def fleet_page(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return html.escape("" if value is None else str(value))
    body = "".join(
        f"<tr><td>{row['partition']}</td><td>{cell(row['pid'])}</td><td>{row['starts']}</td>"
        f"<td>{'yes' if row['mqtt_connected'] else 'no'} {cell(row['mqtt_node'])}</td><td>{cell(row['devices'])}</td>"
        f"<td>{cell(row['samples'])}</td><td>{cell(row['open_incidents'])}</td><td>{cell(row['tickets_delivered'])}"
        f"</td><td><a href=\"{cell(row['console'])}/\">{cell(row['console'])}</a> {cell(row['error'])}</td></tr>"
        for row in rows)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            "content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"refresh\" content=\"5\">"
            "<title>Fleet workers</title><style>body{font:15px system-ui,sans-serif;margin:1rem}"
            "table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}"
            ".scroll{overflow-x:auto}</style></head><body><h1>Fleet workers</h1><div class=\"scroll\"><table>"
            "<tr><th>Partition</th><th>PID</th><th>Starts</th><th>MQTT</th><th>Appliances</th><th>Samples</th>"
            "<th>Open incidents</th><th>Tickets delivered</th><th>Console</th></tr>"
            f"{body}</table></div></body></html>")
