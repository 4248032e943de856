"""`appliance-gateway score`: run scenarios (in parallel parts) and print the accuracy table.

A scenario is named by a YAML file's path or by `generated:SEED` (firmware_sim.generate draws it from the seed),
so worker processes rebuild it from a short string."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.generate import generate
from firmware_sim.scenario import Scenario, ScenarioError, load_scenario
from firmware_sim.scoring import Report, score
from gateway.accuracy import run_scenario
from gateway.config import GatewayConfig
from gateway.engine.library import load_library
from gateway.engine.profiles import Profile

STANDARD_SUITE = Path(__file__).resolve().parent.parent / "firmware_sim" / "scenarios"
GENERATED = "generated:"
# the generated seeds `make test` scores (tests/e2e/test_accuracy_suite.py); others are for the benchmark
CI_SEEDS = (1, 2, 3)


def generated(seeds: range | tuple[int, ...]) -> list[str]:
    return [f"{GENERATED}{seed}" for seed in seeds]


def load_any(spec: str | Path) -> Scenario:
    """A scenario file, or `generated:SEED` drawn on the default profiles."""
    text = str(spec)
    if text.startswith(GENERATED):
        seed = text[len(GENERATED):]
        if not seed.lstrip("-").isdigit():
            raise ScenarioError(f"{text}: a generated scenario is named generated:SEED, SEED a whole number")
        return generate(int(seed), _default_profiles())
    return load_scenario(Path(text))


@functools.cache
def _default_profiles() -> dict[str, Profile]:
    """Loaded once per process: every part of every generated scenario draws on the same profiles."""
    return load_library(GatewayConfig()).profiles


def _run_part(spec: str, index: int, parts: int, folder: str) -> dict[str, Any]:
    logging.getLogger("gateway").setLevel(logging.ERROR)  # the scorer gives its own account of every ticket
    scenario = load_any(spec).part(index, parts)
    run = run_scenario(scenario, Path(folder) / f"{scenario.name}-{index}")
    return {"truth": run.truth, "tickets": run.tickets, "messages": run.messages, "seconds": run.seconds,
            "cpu_seconds": run.cpu_seconds,
            "dropped": run.dropped, "appliance_days": scenario.appliance_days}


def score_scenarios(paths: list[Path] | list[str], workers: int = 2, parts: int = 2,
                    progress: Callable[[Scenario, Report, dict[str, Any]], None] | None = None,
                    ) -> list[tuple[Scenario, Report, dict[str, Any]]]:
    """Run every scenario split into `parts` on `workers` processes; score each whole scenario."""
    scenarios = [load_any(p) for p in paths]  # fail fast on a broken file, before any run
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
