"""Rule files: YAML groups modelled on Prometheus alerting rules, plus an appliance diagnosis block.

Parsing is strict and reports every error at once, each with file:line, group and rule, so an author
fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway import yaml_input
from gateway.engine.durations import parse_duration
from gateway.engine.expr import CompiledExpr, ExprError, compile_expr
from gateway.engine.profiles import Profile
from gateway.model import Cause, Diagnosis
from gateway.prices import PriceTable

SEVERITIES = ("info", "minor", "major", "critical")
CATEGORIES = ("fault", "maintenance", "data_quality")


class RuleFileError(Exception):
    """One or more rule files are broken; `errors` holds every message, each naming file:line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Exclusion:
    """Evidence that rules a cause out: if `expr` holds when the rule fires, the cause is dropped, `because`."""

    cause: str
    expr: CompiledExpr
    because: str


@dataclass(frozen=True)
class Rule:
    rule_id: str
    group: str
    appliance: str
    expr: CompiledExpr
    clear: CompiledExpr | None  # hysteresis: once firing, resolve only when this holds
    for_seconds: float
    keep_firing_for_seconds: float
    labels: dict[str, str]
    diagnosis: Diagnosis
    version: str
    source: str
    inhibits: tuple[str, ...] = ()  # symptom rules this root cause suppresses on the same appliance
    exclusions: tuple[Exclusion, ...] = ()
    time_driven: bool = False  # evaluated on the gateway's timer over all devices (silence), not per sample


class _Map(dict[str, Any]):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class _LineLoader(yaml_input.StrictLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    mapping = _Map()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    yaml_input.check_unique_keys(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[str(key)] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_GROUP_KEYS = {"name", "appliance", "conditions", "rules"}
_RULE_KEYS = {"alert", "expr", "clear", "for", "keep_firing_for", "labels", "diagnosis", "inhibits"}
_DIAG_KEYS = {"code", "title", "explanation", "severity", "causes", "checks", "parts", "service_items"}
NOT_RULE_FILES = {"prices.yaml"}
_RESERVED_NAMES = {"and", "or", "not", "missing", "if"}
_CAUSE_KEYS = {"cause", "likelihood", "reason"}
_UNLESS_KEYS = {"expr", "because"}


class _Collector:
    def __init__(self, path: str, prices: PriceTable | None = None) -> None:
        self.path = path
        self.prices = prices
        self.errors: list[str] = []

    def error(self, line: int, where: str, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: {where}: {message}")


def load_rules(paths: list[Path], profiles: dict[str, Profile], prices: PriceTable | None = None) -> list[Rule]:
    """Load every rule file under `paths` (files or folders; `profiles/` and `tests/` are skipped)."""
    errors: list[str] = []
    rules: list[Rule] = []
    for file in _rule_files(paths, errors):
        try:
            text = yaml_input.read_text(file)
        except yaml_input.InputFileError as exc:
            errors.append(f"{file}:1: file: {exc}")
            continue
        file_rules, file_errors = parse_rule_file(text, str(file), profiles, prices)
        rules.extend(file_rules)
        errors.extend(file_errors)
    names = {rule.rule_id for rule in rules}
    for rule in rules:
        for inhibited in rule.inhibits:
            if inhibited not in names:
                errors.append(f"{rule.source}: rule '{rule.rule_id}' inhibits unknown rule '{inhibited}'")
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.rule_id in seen:
            errors.append(f"{rule.source}: rule '{rule.rule_id}' is already defined at {seen[rule.rule_id]}")
        seen.setdefault(rule.rule_id, rule.source)
    if errors:
        raise RuleFileError(errors)
    return rules


def _rule_files(paths: list[Path], errors: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.yaml"))
                         if not p.name.endswith(".bad.yaml") and p.name not in NOT_RULE_FILES)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such rule file or folder")
    return files


def parse_rule_file(text: str, source: str, profiles: dict[str, Profile],
                    prices: PriceTable | None = None) -> tuple[list[Rule], list[str]]:
    """Parse one file; service items are checked against `prices` when given."""
    collect = _Collector(source, prices)
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        collect.error(line, "file", f"not valid YAML: {getattr(exc, 'problem', exc)}")
        return [], collect.errors
    if not isinstance(doc, _Map) or set(doc) != {"groups"} or not isinstance(doc["groups"], list):
        collect.error(getattr(doc, "line", 1), "file", "a rule file is a mapping with one key, 'groups', a list")
        return [], collect.errors
    rules: list[Rule] = []
    for index, group in enumerate(doc["groups"]):
        rules.extend(_parse_group(group, index, profiles, collect))
    return rules, collect.errors


def _parse_group(group: Any, index: int, profiles: dict[str, Profile], collect: _Collector) -> list[Rule]:
    if not isinstance(group, _Map):
        collect.error(1, f"group #{index + 1}", "a group is a mapping with name, appliance and rules")
        return []
    name = group.get("name")
    where = f"group '{name}'" if isinstance(name, str) else f"group #{index + 1}"
    for key in sorted(set(group) - _GROUP_KEYS):
        collect.error(group.key_lines[key], where, f"unknown key '{key}' (known: {', '.join(sorted(_GROUP_KEYS))})")
    if not isinstance(name, str) or not name:
        collect.error(group.line, where, "key 'name' must be a non-empty string")
    appliance = group.get("appliance")
    profile = profiles.get(appliance) if isinstance(appliance, str) else None
    if profile is None:
        collect.error(group.key_lines.get("appliance", group.line), where,
                      f"key 'appliance' must be one of {sorted(profiles)}, got {appliance!r}")
    conditions = _parse_conditions(group, where, profile, collect)
    rules_doc = group.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        collect.error(group.key_lines.get("rules", group.line), where, "key 'rules' must be a non-empty list")
        return []
    parsed = [_parse_rule(r, str(name), profile, conditions, collect) for r in rules_doc]
    return [r for r in parsed if r is not None]


def _parse_conditions(group: _Map, where: str, profile: Profile | None, collect: _Collector) -> dict[str, str]:
    """The group's named conditions (name -> expression), each checked on its own; rules use them by name."""
    doc = group.get("conditions")
    if doc is None:
        return {}
    if not isinstance(doc, _Map):
        collect.error(group.key_lines.get("conditions", group.line), where,
                      "key 'conditions' must map condition names to expressions")
        return {}
    taken = set(profile.units()) | set(profile.derived_units()) | set(profile.parameter_units()) if profile else set()
    conditions: dict[str, str] = {}
    for name, source in doc.items():
        line = doc.key_lines[name]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in _RESERVED_NAMES:
            collect.error(line, where, f"condition '{name}': a condition name is a snake_case word, not a keyword")
        elif name in taken:
            collect.error(line, where, f"condition '{name}' has the name of a metric or parameter")
        elif not isinstance(source, str) or not source.strip():
            collect.error(line, where, f"condition '{name}' must be a non-empty expression")
        else:
            conditions[name] = source
    if profile is not None:
        for name, source in conditions.items():
            try:
                compile_expr(source, profile.units(), profile.derived_units(),
                             parameters=profile.parameter_units(), conditions=conditions)
            except ExprError as exc:
                collect.error(doc.key_lines[name], where, f"condition '{name}': {exc}")
    return conditions


def _parse_rule(doc: Any, group: str, profile: Profile | None, conditions: dict[str, str],
                collect: _Collector) -> Rule | None:
    if not isinstance(doc, _Map):
        collect.error(1, f"group '{group}'", "each rule is a mapping starting with 'alert'")
        return None
    alert = doc.get("alert")
    where = f"group '{group}', rule '{alert}'"
    before = len(collect.errors)
    for key in sorted(set(doc) - _RULE_KEYS):
        collect.error(doc.key_lines[key], where, f"unknown key '{key}' (known: {', '.join(sorted(_RULE_KEYS))})")
    if not isinstance(alert, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", alert):
        collect.error(doc.line, where, "key 'alert' must be a snake_case name")
    expr = _parse_expr(doc, where, profile, conditions, collect)
    clear = _parse_expr(doc, where, profile, conditions, collect, key="clear") if "clear" in doc else None
    durations = {}
    for key in ("for", "keep_firing_for"):
        value = parse_duration(doc.get(key, 0))
        if value is None:
            collect.error(doc.key_lines.get(key, doc.line), where,
                          f"key '{key}' must be a duration like 30s, 5m or 1h, got {doc.get(key)!r}")
        durations[key] = value or 0.0
    labels = doc.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        collect.error(doc.key_lines.get("labels", doc.line), where, "key 'labels' must map names to strings")
        labels = {}
    category = labels.get("category", "fault")
    if category not in CATEGORIES:
        collect.error(doc.key_lines.get("labels", doc.line), where,
                      f"label 'category' must be one of {list(CATEGORIES)}, got {category!r}")
    diagnosis = _parse_diagnosis(doc.get("diagnosis"), doc, where, category, collect)
    exclusions = _parse_exclusions(doc.get("diagnosis"), where, profile, conditions, collect)
    inhibits = doc.get("inhibits", [])
    if not isinstance(inhibits, list) or not all(isinstance(i, str) for i in inhibits):
        collect.error(doc.key_lines.get("inhibits", doc.line), where, "key 'inhibits' must be a list of rule names")
        inhibits = []
    if len(collect.errors) > before or expr is None or diagnosis is None or profile is None:
        return None
    return Rule(
        rule_id=str(alert), group=group, appliance=profile.appliance, expr=expr, clear=clear,
        for_seconds=durations["for"], keep_firing_for_seconds=durations["keep_firing_for"],
        labels=dict(labels), diagnosis=diagnosis, version=_version(doc, conditions),
        source=f"{collect.path}:{doc.line}", inhibits=tuple(inhibits), exclusions=exclusions,
    )


def _parse_expr(doc: _Map, where: str, profile: Profile | None, conditions: dict[str, str], collect: _Collector,
                key: str = "expr") -> CompiledExpr | None:
    source = doc.get(key)
    line = doc.key_lines.get(key, doc.line)
    if not isinstance(source, str) or not source.strip():
        collect.error(line, where, f"key '{key}' must be a non-empty expression")
        return None
    if profile is None:
        return None
    try:
        return _compile(source, profile, conditions)
    except ExprError as exc:
        collect.error(line, where, f"bad {key}: {exc}")
        return None


def _compile(source: str, profile: Profile, conditions: dict[str, str]) -> CompiledExpr:
    """An expression of a rule of `profile`'s appliance: its metrics, parameters and the group's conditions."""
    return compile_expr(source, profile.units(), profile.derived_units(), parameters=profile.parameter_units(),
                        conditions=conditions)


def _parse_diagnosis(doc: Any, rule: _Map, where: str, category: str, collect: _Collector) -> Diagnosis | None:
    line = rule.key_lines.get("diagnosis", rule.line)
    if not isinstance(doc, _Map):
        collect.error(line, where, "key 'diagnosis' must be a mapping (code, title, severity, causes, ...)")
        return None
    before = len(collect.errors)
    for key in sorted(set(doc) - _DIAG_KEYS):
        known = ", ".join(sorted(_DIAG_KEYS))
        collect.error(doc.key_lines[key], where, f"unknown diagnosis key '{key}' (known: {known})")
    code, title, severity = doc.get("code"), doc.get("title"), doc.get("severity")
    if not isinstance(code, str) or not code:
        collect.error(doc.key_lines.get("code", doc.line), where, "diagnosis 'code' must be a non-empty string")
    if not (isinstance(title, dict) and isinstance(title.get("en"), str) and isinstance(title.get("zh"), str)):
        collect.error(doc.key_lines.get("title", doc.line), where, "diagnosis 'title' needs 'en' and 'zh' strings")
        title = {}
    if severity not in SEVERITIES:
        collect.error(doc.key_lines.get("severity", doc.line), where,
                      f"diagnosis 'severity' must be one of {list(SEVERITIES)}, got {severity!r}")
    causes = _parse_causes(doc, where, collect)
    checks, parts, items = doc.get("checks", []), doc.get("parts", []), doc.get("service_items", [])
    for key, value in (("checks", checks), ("parts", parts), ("service_items", items)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            collect.error(doc.key_lines.get(key, doc.line), where, f"diagnosis '{key}' must be a list of strings")
    explanation = doc.get("explanation", {"en": "", "zh": ""})
    if not (isinstance(explanation, dict) and isinstance(explanation.get("en"), str)
            and isinstance(explanation.get("zh"), str)):
        collect.error(doc.key_lines.get("explanation", doc.line), where,
                      "diagnosis 'explanation' needs 'en' and 'zh' strings")
        explanation = {"en": "", "zh": ""}
    if collect.prices is not None and isinstance(items, list):
        if not items:
            collect.error(doc.key_lines.get("service_items", doc.line), where,
                          "diagnosis 'service_items' must name at least one item of the price table")
        for item in items:
            if item not in collect.prices.items:
                collect.error(doc.key_lines.get("service_items", doc.line), where,
                              f"service item '{item}' is not in the price table")
    if len(collect.errors) > before:
        return None
    return Diagnosis(str(code), title["en"], title["zh"], str(severity), category, tuple(causes),
                     tuple(checks), tuple(parts), explanation["en"], explanation["zh"], tuple(items))


def _parse_causes(doc: _Map, where: str, collect: _Collector) -> list[Cause]:
    causes_doc = doc.get("causes")
    line = doc.key_lines.get("causes", doc.line)
    if not isinstance(causes_doc, list) or not causes_doc:
        collect.error(line, where, "diagnosis 'causes' must be a non-empty list")
        return []
    causes: list[Cause] = []
    for item in causes_doc:
        item_line = getattr(item, "line", line)
        if not isinstance(item, _Map) or set(item) - {"unless"} != _CAUSE_KEYS:
            collect.error(item_line, where, "each cause has: cause, likelihood, reason, and optionally unless")
            continue
        likelihood = item["likelihood"]
        if not isinstance(likelihood, int | float) or not 0 < likelihood <= 1:
            collect.error(item_line, where, f"cause likelihood must be in (0, 1], got {likelihood!r}")
            continue
        causes.append(Cause(str(item["cause"]), float(likelihood), str(item["reason"])))
    if causes and sum(c.likelihood for c in causes) > 1.0 + 1e-9:
        collect.error(line, where, "cause likelihoods add up to more than 1")
    return sorted(causes, key=lambda c: -c.likelihood)


def _parse_exclusions(doc: Any, where: str, profile: Profile | None, conditions: dict[str, str],
                      collect: _Collector) -> tuple[Exclusion, ...]:
    if not isinstance(doc, _Map) or not isinstance(doc.get("causes"), list) or profile is None:
        return ()
    exclusions = []
    for item in doc["causes"]:
        unless = item.get("unless") if isinstance(item, _Map) else None
        if unless is None:
            continue
        line = unless.line if isinstance(unless, _Map) else getattr(item, "line", doc.line)
        if not isinstance(unless, _Map) or set(unless) != _UNLESS_KEYS:
            collect.error(line, where, "a cause's 'unless' has exactly: expr, because")
            continue
        try:
            compiled = _compile(str(unless["expr"]), profile, conditions)
        except ExprError as exc:
            collect.error(line, where, f"bad unless expr: {exc}")
            continue
        exclusions.append(Exclusion(str(item["cause"]), compiled, str(unless["because"])))
    return tuple(exclusions)


def _version(doc: _Map, conditions: dict[str, str]) -> str:
    """Content hash of the rule and its group's conditions, so a ticket records exactly which rule text
    produced it."""
    content = _plain(doc) if not conditions else {"rule": _plain(doc), "conditions": conditions}
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
