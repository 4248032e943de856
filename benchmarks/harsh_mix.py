"""Generated scenarios with a harsher mix than CI's (more faults, overlaps, repairs, outages, sensor and connection
faults, more UART lines), scored against their truth: a check that the thresholds hold beyond the CI mix.

    .venv/bin/python -m benchmarks.harsh_mix 1 13        # seeds 1..12, on 2 processes
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from multiprocessing import Pool
from pathlib import Path

from firmware_sim.generate import HARSH, generate
from firmware_sim.scoring import meets
from gateway.accuracy import run_scenario, score_run
from gateway.config import GatewayConfig
from gateway.engine.library import load_library


def score_seed(seed: int) -> str:
    logging.disable(logging.WARNING)
    scenario = generate(seed, load_library(GatewayConfig()).profiles, HARSH)
    scenario.name = f"harsh-{seed}"
    with tempfile.TemporaryDirectory() as folder:
        run = run_scenario(scenario, Path(folder))
    report = score_run(scenario, run)
    result = report.as_dict()
    missed = {name: f["missed"] for name, f in result["per_fault"].items() if f["missed"]}
    missing = meets(report)
    verdict = "meets" if not missing else "MISSES " + "; ".join(missing)
    line = (f"harsh-{seed}: {result['expected']} detectable, recall {result['recall']:.3f}, "
            f"precision {result['precision']:.3f}, top cause {result['top_cause_accuracy']:.3f}, "
            f"false {result['false_tickets']}, duplicates {result['duplicates']}, {verdict}")
    if missed:
        line += f", missed {missed}"
    if result["false_ticket_detail"]:
        line += f", false {result['false_ticket_detail']}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=int)
    parser.add_argument("end", type=int, help="one past the last seed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with Pool(args.workers) as pool:
        for line in pool.imap(score_seed, range(args.first, args.end)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
