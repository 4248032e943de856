"""Rule unit tests written as YAML beside the rules, in the spirit of Prometheus' `promtool test rules`.

    rule_files: [../washer.yaml]      # optional: the rule files under test (relative to this file); without
                                      # it, the configured rule library
    profiles: [profiles/]             # optional: more appliance profiles (a new type), relative to this file
    tests:
      - name: condenser fan fails
        appliance: air_conditioner
        interval: 1s
        series:                       # per device, per metric, in a compact notation
          ac1:
            compressor_on: "1*60"              # 60 samples of 1
            discharge_pressure: "2700*20 2700..4100*10 4100*30"   # a ramp over 10 samples
            indoor_coil_temperature: "_*60"    # missing
        parameters:                   # optional: per-device parameters, as the appliance's meta gives them
          ac1: {design_discharge_pressure: 3900}
        covers: [condenser_airflow_loss]   # optional: the rules a near miss (expect: []) is about
        expect:                       # exactly these transitions, at these offsets from the first sample
          - {alert: condenser_airflow_loss, device: ac1, fires_at: 45s}
          - {alert: condenser_airflow_loss, device: ac1, resolves_at: 70s}

Anything that fires and is not expected fails the test, so a near-miss case is simply a test with `expect: []`.
Every rule of the named rule files needs a case where it fires and a near miss (a case that covers it and in
which it does not fire); `run_suite` reports each rule without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from gateway import yaml_input
from gateway.clock import FakeClock
from gateway.engine.durations import parse_duration
from gateway.engine.evaluator import AlertTransition, Transition
from gateway.engine.library import Library
from gateway.engine.profiles import ProfileError
from gateway.engine.rules import Rule, RuleFileError
from gateway.pipeline import Pipeline, PipelineSettings
from gateway.protocol.topics import TopicKind, appliance_topic
from gateway.store.db import Database

BASE_TS = 1_700_000_000.0


class RuleTestError(Exception):
    """A rule test file is malformed."""


@dataclass(frozen=True)
class Outcome:
    name: str
    source: str
    passed: bool
    expected: list[str]
    got: list[str]
    covers: tuple[str, ...] = ()  # rules this case is about; a near miss names them, as nothing fires

    def fires(self, rule_id: str) -> bool:
        return any(e.startswith(f"{rule_id} on ") and " fires_at " in e for e in self.expected)

    def describe(self) -> str:
        if self.passed:
            return f"ok      {self.name}"
        missing = [e for e in self.expected if e not in self.got]
        unexpected = [g for g in self.got if g not in self.expected]
        return (f"FAILED  {self.name} ({self.source})\n"
                + "".join(f"          expected, did not happen: {m}\n" for m in missing)
                + "".join(f"          happened, not expected:   {u}\n" for u in unexpected)).rstrip()


MAX_SAMPLES = 1_000_000  # per metric of a device: a rule test is a few days of samples at most


def expand(notation: str | float | int) -> list[float]:
    """'1*3 2..4*3 _ 7' -> [1, 1, 1, 2, 3, 4, nan, 7]."""
    values: list[float] = []
    for token in str(notation).split():
        text, _, count_text = token.partition("*")
        try:
            count = int(count_text) if count_text else 1
            if not 1 <= count <= MAX_SAMPLES - len(values):
                raise RuleTestError(f"bad repeat count in {token!r} (1 to {MAX_SAMPLES:,} samples in all)")
            if text == "_":
                values.extend([math.nan] * count)
            elif ".." in text:
                start, end = (float(x) for x in text.split(".."))
                values.extend(np.linspace(start, end, count).tolist() if count > 1 else [end])
            else:
                values.extend([float(text)] * count)
        except ValueError:
            raise RuleTestError(f"bad sample notation {token!r} (numbers, _ for none, a..b ramps, *n repeats)") \
                from None
    return values


LibraryLoader = Callable[[list[Path], tuple[Path, ...]], Library]  # (rule files, extra profiles) -> library


@dataclass
class FileResult:
    path: Path
    outcomes: list[Outcome]
    errors: list[str]  # the file, or a case of it, is malformed: said here, and the other cases still run
    rule_files: tuple[Path, ...] = ()  # what it names under `rule_files:` (resolved); () is the configured library
    library: Library | None = None  # what it ran against (None: it could not run)


@dataclass
class SuiteResult:
    files: list[FileResult]
    gaps: list[str]  # rules without a firing case or a near miss

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for f in self.files for o in f.outcomes]

    @property
    def errors(self) -> list[str]:
        return [e for f in self.files for e in f.errors]

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes) and not self.errors and not self.gaps


def run_suite(files: list[Path], library: Library, load: LibraryLoader, whole_library: bool = False) -> SuiteResult:
    """Run every test file, each against the rule files it names (else `library`), then check that every rule
    under test has a firing case and a near miss; with `whole_library`, every rule of `library` is under test."""
    results: list[FileResult] = []
    loaded: dict[tuple[tuple[Path, ...], tuple[Path, ...]], Library] = {}
    for path in files:
        results.append(_run_one(path, library, load, loaded))
    under_test: dict[str, tuple[Rule, list[Outcome]]] = {}
    for result in results:
        if not result.rule_files or result.library is None:
            continue
        for rule in _authored(result.library.rules):
            file = Path(rule.source.rpartition(":")[0]).resolve()
            if any(file == named or named in file.parents for named in result.rule_files):
                under_test.setdefault(rule.rule_id, (rule, []))[1].extend(result.outcomes)
    if whole_library:
        everything = [o for r in results for o in r.outcomes]
        for rule in _authored(library.rules):
            under_test.setdefault(rule.rule_id, (rule, everything))
    gaps = []
    for rule_id, (rule, outcomes) in sorted(under_test.items()):
        if not any(o.fires(rule_id) for o in outcomes):
            gaps.append(f"{rule.source}: rule '{rule_id}' has no test case in which it fires")
        if not any(rule_id in o.covers and not o.fires(rule_id) for o in outcomes):
            gaps.append(f"{rule.source}: rule '{rule_id}' has no near miss (a case with covers: [{rule_id}] in "
                        "which it does not fire)")
    return SuiteResult(results, gaps)


def _authored(rules: list[Rule]) -> list[Rule]:
    """The rules of rule files (the built-in data-quality rules are tested by their own file)."""
    return [r for r in rules if r.group != "builtin_data_quality"]


def _run_one(path: Path, library: Library, load: LibraryLoader,
             loaded: dict[tuple[tuple[Path, ...], tuple[Path, ...]], Library]) -> FileResult:
    try:
        doc = _load_test_file(path)
        rule_files = _relative_paths(doc, "rule_files", path)
        profiles = _relative_paths(doc, "profiles", path)
    except RuleTestError as exc:
        return FileResult(path, [], [str(exc)])
    file_library = library
    if rule_files or profiles:
        key = (rule_files, profiles)
        if key not in loaded:
            try:
                loaded[key] = load(list(rule_files) or list(library.rule_paths), profiles)
            except (RuleFileError, ProfileError) as exc:
                return FileResult(path, [], [f"{path}: the rule files it names do not load:\n{exc}"], rule_files)
        file_library = loaded[key]
    outcomes, errors = [], []
    for i, case in enumerate(doc["tests"]):
        try:
            outcomes.append(run_case(case, file_library, f"{path}#{i + 1}"))
        except RuleTestError as exc:
            errors.append(str(exc))
    return FileResult(path, outcomes, errors, rule_files, file_library)


def _load_test_file(path: Path) -> dict[str, Any]:
    try:
        doc = yaml_input.load_file(path)
    except OSError as exc:
        raise RuleTestError(f"{path}: cannot read the rule test file: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError, yaml_input.InputFileError) as exc:
        raise RuleTestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise RuleTestError(f"{path}: a rule test file is a mapping with a list under 'tests'")
    unknown = set(doc) - {"tests", "rule_files", "profiles"}
    if unknown:
        raise RuleTestError(f"{path}: unknown key(s) {sorted(unknown)} (known: profiles, rule_files, tests)")
    if not all(isinstance(case, dict) for case in doc["tests"]):
        raise RuleTestError(f"{path}: each entry under 'tests' is a mapping (name, appliance, series, expect)")
    return doc


def _relative_paths(doc: dict[str, Any], key: str, path: Path) -> tuple[Path, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleTestError(f"{path}: '{key}' must be a list of paths relative to the test file")
    resolved = tuple((path.parent / v).resolve() for v in value)
    for item in resolved:
        if not item.exists():
            raise RuleTestError(f"{path}: '{key}' names {item}, which does not exist")
    return resolved


def run_file(path: Path, library: Library) -> list[Outcome]:
    """One test file against `library` (its `rule_files:` are not loaded); raises on a malformed file."""
    doc = _load_test_file(path)
    return [run_case(case, library, f"{path}#{i + 1}") for i, case in enumerate(doc["tests"])]


def run_case(case: dict[str, Any], library: Library, source: str) -> Outcome:
    """Play the series through the gateway's own Pipeline (ingest validation, live rule timing, inhibition by
    open incidents) and compare the incidents it opens and resolves with the expected ones."""
    profiles = library.profiles
    name = str(case.get("name", source))
    appliance = case.get("appliance")
    if appliance not in profiles:
        raise RuleTestError(f"{source}: 'appliance' must be one of {sorted(profiles)}")
    interval = parse_duration(case.get("interval", "1s"))
    if not interval:
        raise RuleTestError(f"{source}: 'interval' must be a duration")
    series_doc, parameters = case.get("series") or {}, case.get("parameters") or {}
    if not isinstance(series_doc, dict) or not all(isinstance(m, dict) for m in series_doc.values()):
        raise RuleTestError(f"{source}: 'series' maps each device to its metrics' notation")
    if not isinstance(parameters, dict) or not all(isinstance(p, dict) for p in parameters.values()):
        raise RuleTestError(f"{source}: 'parameters' maps each device to its parameter values")
    expect = case.get("expect") or []
    if not isinstance(expect, list) or not all(
            isinstance(e, dict) and "alert" in e and "device" in e and ("fires_at" in e or "resolves_at" in e)
            for e in expect):
        raise RuleTestError(f"{source}: each 'expect' entry has alert, device and fires_at or resolves_at")
    series = {str(device): {str(metric): expand(text) for metric, text in metrics.items()}
              for device, metrics in series_doc.items()}
    known_parameters = {p.name for p in profiles[appliance].parameters}
    for device, values in parameters.items():
        if set(values) - known_parameters:
            raise RuleTestError(f"{source}: device {device}: unknown parameter(s) "
                                f"{sorted(set(values) - known_parameters)} (known: {sorted(known_parameters)})")
    type_rules = [r for r in library.rules if r.appliance == appliance]
    known = {m.name for m in profiles[appliance].metrics}  # what an appliance can report
    for device, metrics in series.items():
        unknown = set(metrics) - known
        if unknown:
            raise RuleTestError(f"{source}: device {device}: unknown metric(s) {sorted(unknown)}")
    clock = FakeClock(BASE_TS)
    db = Database(":memory:")
    settings = PipelineSettings(site="rule-test")
    pipeline = Pipeline(library, db, clock, settings, rules=type_rules)
    got: list[str] = []

    def account(found: list[AlertTransition], held: list[AlertTransition]) -> None:
        held_ids = {id(t) for t in held}
        for transition in found:
            if id(transition) in held_ids:
                continue  # held back by another open incident of the appliance: live opens nothing either
            verb = "fires_at" if transition.kind is Transition.FIRING else "resolves_at"
            got.append(_describe(transition.rule.rule_id, transition.device_id, verb, transition.at_ts - BASE_TS))

    pipeline.observers.append(account)
    for device, values in parameters.items():  # as the appliance's retained meta gives them
        pipeline.feed(appliance_topic(str(device), TopicKind.META),
                      orjson.dumps({"type": appliance, "parameters": values}))
    steps = max((len(v) for m in series.values() for v in m.values()), default=0)
    try:
        for step in range(steps):
            ts = BASE_TS + step * interval
            clock.set(ts)
            for device, metrics in series.items():
                sample = {m: v[step] for m, v in metrics.items() if step < len(v) and not math.isnan(v[step])}
                if sample:
                    pipeline.feed(appliance_topic(device, TopicKind.TELEMETRY),
                                  orjson.dumps({"ts": ts, "type": appliance, "metrics": sample}))
            pipeline.evaluate()
            pipeline.tick(ts)
    finally:
        db.close()
    expected = []
    for entry in expect:
        for verb in ("fires_at", "resolves_at"):
            if verb in entry:
                offset = parse_duration(entry[verb])
                if offset is None:
                    raise RuleTestError(f"{source}: {verb} must be a duration from the first sample, like 45s or "
                                        f"0s, got {entry[verb]!r}")
                expected.append(_describe(str(entry["alert"]), str(entry["device"]), verb, offset))
    covers = tuple(case.get("covers") or ()) + tuple(str(e["alert"]) for e in expect)
    unknown_rules = set(covers) - {r.rule_id for r in type_rules}
    if unknown_rules:
        raise RuleTestError(f"{source}: 'covers' names unknown {appliance} rule(s) {sorted(unknown_rules)}")
    cadences = {r.rule_id: pipeline.evaluator.cadence_of(r.rule_id) for r in type_rules}
    slack = {rule_id: cadence + interval if cadence else 0.0 for rule_id, cadence in cadences.items()}
    return Outcome(name, source, _matches(expected, got, slack), expected, got, covers)


def _matches(expected: list[str], got: list[str], slack: dict[str, float]) -> bool:
    """Every expected transition happened, at its offset or at most one cadence later (live evaluates
    long-window rules once per cadence of each device's time), and nothing else happened."""
    remaining = list(got)
    for text in expected:
        alert, device, verb, offset = _parse(text)
        match = next((g for g in remaining if _parse(g)[:3] == (alert, device, verb)
                      and offset <= _parse(g)[3] <= offset + slack.get(alert, 0.0)), None)
        if match is None:
            return False
        remaining.remove(match)
    return not remaining


def _describe(alert: str, device: str, verb: str, offset: float) -> str:
    return f"{alert} on {device} {verb} {offset:g}s"


def _parse(text: str) -> tuple[str, str, str, float]:
    alert, _, device, verb, offset = text.split(" ")
    return alert, device, verb, float(offset.removesuffix("s"))


def find_test_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        folder = path / "tests" if (path / "tests").is_dir() else path
        files.extend(sorted(folder.glob("*.test.yaml")) if folder.is_dir() else [path])
    return files
