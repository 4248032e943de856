"""`appliance-gateway score`: run scenarios (in parallel parts) and print the accuracy table."""

from __future__ import annotations

import concurrent.futures
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.scoring import Report, score
from gateway.accuracy import run_scenario

STANDARD_SUITE = Path(__file__).resolve().parent.parent / "firmware_sim" / "scenarios"


def _run_part(path: str, index: int, parts: int, folder: str) -> dict[str, Any]:
    logging.getLogger("gateway").setLevel(logging.ERROR)  # the scorer gives its own account of every ticket
    scenario = load_scenario(Path(path)).part(index, parts)
    run = run_scenario(scenario, Path(folder) / f"{scenario.name}-{index}")
    return {"truth": run.truth, "tickets": run.tickets, "messages": run.messages, "seconds": run.seconds,
            "cpu_seconds": run.cpu_seconds,
            "dropped": run.dropped, "appliance_days": scenario.appliance_days}


def score_scenarios(paths: list[Path], workers: int = 2, parts: int = 2,
                    progress: Callable[[Scenario, Report, dict[str, Any]], None] | None = None,
                    ) -> list[tuple[Scenario, Report, dict[str, Any]]]:
    """Run every scenario split into `parts` on `workers` processes; score each whole scenario."""
    scenarios = [load_scenario(p) for p in paths]  # fail fast on a broken file, before any run
    with tempfile.TemporaryDirectory() as folder, \
            concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {(str(path), i): pool.submit(_run_part, str(path), i, parts, folder)
                   for path in paths for i in range(parts)}
        results = []
        for path, scenario in zip(paths, scenarios, strict=True):
            shares = [futures[(str(path), i)].result() for i in range(parts)]
            truth = [t for s in shares for t in s["truth"]]
            tickets = [t for s in shares for t in s["tickets"]]
            report = score(scenario.name, scenario.appliance_days, truth, tickets)
            stats = {"messages": sum(s["messages"] for s in shares),
                     "cpu_seconds": sum(s["cpu_seconds"] for s in shares),
                     "truth": truth, "tickets": tickets}
            if progress is not None:
                progress(scenario, report, stats)
            results.append((scenario, report, stats))
    return results


def write_json(path: Path, data: Any) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
