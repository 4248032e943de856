"""Device page time to first chart with 24 h of 1 Hz data for 10 metrics, in headless Chromium.

    .venv/bin/python -m benchmarks.device_page

The gateway's history holds the 24 h as 1-minute aggregates (1,440 x 10 rows) and its window the last
15 minutes raw, as after a day of running. The console runs in this process on a thread; Chromium (Debian's,
driven by Selenium) opens the 24 h view five times. Printed: the server's time to render the page, and the
browser's time from navigation start to the first chart in the DOM and to the load event.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from firmware_sim.localnet import free_port
from gateway.config import GatewayConfig
from gateway.engine.library import build_window_store, load_library
from gateway.ingest.registry import DeviceRegistry
from gateway.store.db import Database
from gateway.store.history import History
from gateway.web.access import Access
from gateway.web.app import WebContext, create_app

TOKEN = "benchmark-admin-token"
METRICS = 10


def build(folder: Path) -> tuple[WebContext, str]:
    profiles = load_library(GatewayConfig()).profiles
    profile = profiles["air_conditioner"]
    names = profile.metric_names[:METRICS]
    store = build_window_store(profiles, {n: 1000 for n in profiles}, 4)
    registry = DeviceRegistry(set(profiles))
    registry.set_meta("ac-1", {"type": "air_conditioner", "brand": "Midea", "model": "KFR-35GW"})
    db = Database(folder / "gateway.db")
    history = History(folder / "history.db", store, {n: p.interval_seconds for n, p in profiles.items()})
    now = time.time()
    minute0 = now - now % 60 - 86400
    rng = np.random.default_rng(2)
    rows = [("ac-1", name, int(minute0 + 60 * i), 60, 10.0 + j, 15.0 + j + float(rng.normal()), 20.0 + j, 15.0 + j)
            for i in range(1440) for j, name in enumerate(names)]
    history.write(rows)
    window = store.windows["air_conditioner"]
    row = window.row("ac-1")
    for second in range(900):  # the last 15 minutes raw
        window.append(row, now - 900 + second, {name: 15.0 + j + float(rng.normal()) for j, name in enumerate(names)})
    registry.seen("ac-1", now)
    history._next_minute["air_conditioner"] = now - now % 60  # as if every closed minute were flushed
    context = WebContext(registry, db, lambda: {}, Access(TOKEN, b"k" * 32, db), profiles, store, history)
    return context, f"/devices/ac-1?range=24h&token={TOKEN}"


def serve(context: WebContext, port: int, ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        runner = web.AppRunner(create_app(context), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    asyncio.run(main())


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        context, path = build(Path(folder))
        port = free_port()
        ready, stop = threading.Event(), threading.Event()
        server = threading.Thread(target=serve, args=(context, port, ready, stop), daemon=True)
        server.start()
        ready.wait(10)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--user-data-dir={Path(folder) / 'profile'}", "--window-size=412,915"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or
                                                                   "/usr/bin/chromedriver"))
        first_chart, loaded, server_ms = [], [], []
        try:
            for _ in range(6):
                driver.get(f"http://127.0.0.1:{port}{path}")
                timing = driver.execute_script(
                    "const n=performance.getEntriesByType('navigation')[0];"
                    "return [n.responseStart-n.requestStart, n.domInteractive, n.loadEventEnd,"
                    "document.querySelectorAll('svg.chart').length,"
                    "document.querySelector('svg.chart').getAttribute('data-points')];")
                server_ms.append(timing[0])
                first_chart.append(timing[1])  # inline SVG: the first chart is in the DOM when it is interactive
                loaded.append(timing[2])
            charts, points = timing[3], timing[4]
        finally:
            driver.quit()
            stop.set()
            server.join(5)
        runs = slice(1, None)  # the first run warms up the browser
        print(f"24 h of 1 Hz data, {METRICS} metrics -> {charts} charts of {points} points each")
        print(f"server time to first byte: median {statistics.median(server_ms[runs]):.0f} ms")
        print(f"navigation start -> first chart in the DOM: median {statistics.median(first_chart[runs]):.0f} ms; "
              f"-> load event: median {statistics.median(loaded[runs]):.0f} ms (of {len(loaded) - 1} runs)")


if __name__ == "__main__":
    main()
