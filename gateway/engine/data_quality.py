"""Data-quality rules built into every appliance profile.

A broken sensor or a dropped connection must never be diagnosed as a broken component: these rules open a
"sensor / connectivity" incident, and while one is open the appliance's component faults are inhibited.
They are generated from the profile (valid ranges, `flatline_after`, `max_step`, reporting interval), so a new
appliance type gets them without writing any.
"""

from __future__ import annotations

import hashlib

import numpy as np

from gateway.engine.columns import Online, RecentEvents, Silence, Stale, TypicalGap, Unchanged
from gateway.engine.expr import CompiledExpr, EvalContext, FloatArray
from gateway.engine.profiles import OUT_OF_RANGE_METRIC, Profile
from gateway.engine.rules import Rule
from gateway.model import Cause, Diagnosis
from gateway.store.window import OWN_INTERVALS

JUMP_WINDOW_SECONDS = 600.0
JUMPS_FOR_A_FAULT = 3

_WIRING = Cause("Loose connector or damaged sensor wiring", 0.3,
                "Intermittent contacts produce dropouts, jumps and impossible readings.")


ALWAYS_ON_OFFLINE_SECONDS = 1800.0


def builtin_rules(profile: Profile) -> list[Rule]:
    rules = [_out_of_range(profile), _stale(profile), _silent_while_online(profile)]
    if profile.always_on:
        rules.append(_offline(profile))
    for metric in profile.metrics:
        if metric.flatline_after:
            rules.append(_flatline(profile, metric.name, metric.flatline_after))
        if metric.max_step:
            rules.append(_jumps(profile, metric.name, metric.max_step))
    return rules


def _rule(profile: Profile, name: str, expr: CompiledExpr, code: str, title: tuple[str, str],
          explanation: tuple[str, str], causes: tuple[Cause, ...], time_driven: bool = False,
          for_seconds: float = 0.0) -> Rule:
    diagnosis = Diagnosis(code, title[0], title[1], "minor", "data_quality", causes,
                          ("Check the sensor reading against a reference thermometer or gauge",
                           "Check connectors, wiring and the appliance's network module"), (),
                          explanation[0], explanation[1], ("sensor_or_connectivity",))
    version = hashlib.sha256(f"{name}|{expr.source}|{code}".encode()).hexdigest()[:12]
    return Rule(f"{profile.appliance}_{name}", "builtin_data_quality", profile.appliance, expr, None, for_seconds, 0.0,
                {"category": "data_quality"}, diagnosis, version, f"built-in data-quality rule ({profile.appliance})",
                time_driven=time_driven)


def _recent_events(column: str) -> CompiledExpr:
    """Three events (jumps, impossible values) within 10 minutes, from the store's event-time rings."""

    def evaluate(context: EvalContext) -> FloatArray:
        result: FloatArray = (context.builtin(RecentEvents(column)) <= JUMP_WINDOW_SECONDS).astype(np.float64)
        return result

    return CompiledExpr(f"{JUMPS_FOR_A_FAULT} events of {column} within {JUMP_WINDOW_SECONDS:g} s", evaluate,
                        frozenset({column}), (), {})


def _out_of_range(profile: Profile) -> Rule:
    expr = _recent_events(OUT_OF_RANGE_METRIC)
    return _rule(profile, "sensor_out_of_range", expr, "DQ-RANGE",
                 ("A sensor reports impossible values", "传感器读数超出物理范围"),
                 ("A sensor reports values no working sensor can produce, so the gateway ignores them and does "
                  "not diagnose the appliance from them.",
                  "传感器数值不可能出现，网关已忽略这些数值，不据此判断故障。"),
                 (Cause("Sensor failed (open or short circuit)", 0.6, "Open or shorted sensors read at the ends "
                        "of their range."), _WIRING))



def own_limit(context: EvalContext, limit: float) -> FloatArray:
    """The profile's silence limit, or five of the device's own reporting intervals where it reports more
    slowly than that allows for (a fridge reporting every two minutes against a 150 s limit would be "silent"
    whenever one report came late). Before a device has shown its interval (one sample so far), five of the
    profile's limits: its second report may simply be late."""
    typical = context.builtin(TypicalGap())
    result: FloatArray = np.where(np.isnan(typical), OWN_INTERVALS * limit,
                                  np.fmax(limit, OWN_INTERVALS * typical))
    return result


def _flatline(profile: Profile, metric: str, seconds: float) -> Rule:
    stale_limit = profile.silence_limit

    def evaluate(context: EvalContext) -> FloatArray:
        unchanged = context.builtin(Unchanged(metric))
        still_reported = context.builtin(Stale()) <= own_limit(context, stale_limit)
        result: FloatArray = ((unchanged > seconds) & still_reported).astype(np.float64)
        return result

    expr = CompiledExpr(f"{metric} reported but unchanged for more than {seconds:g} s", evaluate,
                        frozenset({metric}), (), {})
    return _rule(profile, f"{metric}_stuck", expr, "DQ-STUCK",
                 (f"Sensor stuck: {metric}", f"传感器读数不变：{metric}"),
                 ("A reading that should move all the time has not changed at all, so the sensor is probably "
                  "stuck.", "本应持续变化的读数完全不变，传感器可能卡死。"),
                 (Cause("Sensor or its converter stuck", 0.6, "A live sensor always shows some noise; an exactly "
                        "constant value means the reading is not being refreshed."), _WIRING))


def _jumps(profile: Profile, metric: str, max_step: float) -> Rule:
    expr = _recent_events(metric)  # the store records a jump when a value moves more than max_step
    return _rule(profile, f"{metric}_implausible_jumps", expr, "DQ-JUMP",
                 (f"Implausible jumps: {metric}", f"读数跳变异常：{metric}"),
                 ("A reading jumps by more than the physics allows between two samples, again and again.",
                  "读数在相邻两次采样间的变化超出物理可能，且反复出现。"),
                 (Cause("Intermittent sensor or interference", 0.6, "Physical quantities change smoothly; "
                        "repeated jumps come from the measurement, not the appliance."), _WIRING))


def _stale(profile: Profile) -> Rule:
    limit = profile.silence_limit

    def evaluate(context: EvalContext) -> FloatArray:
        result: FloatArray = (context.builtin(Stale()) > own_limit(context, limit)).astype(np.float64)
        return result

    expr = CompiledExpr(f"a metric not reported for {limit:g} s while others are", evaluate, frozenset(), (), {})
    return _rule(profile, "stale_metric", expr, "DQ-STALE",
                 ("A sensor stopped reporting", "某个传感器停止上报"),
                 ("The appliance is online but one of its readings has stopped arriving.",
                  "设备在线，但其中一项读数已停止上报。"),
                 (Cause("Sensor disconnected", 0.6, "The appliance still reports its other readings."), _WIRING))


def _silent_while_online(profile: Profile) -> Rule:
    """The appliance never said it was going offline, yet it stopped reporting: a connection problem."""
    limit = profile.silence_limit

    def evaluate(context: EvalContext) -> FloatArray:
        silent = (context.builtin(Online()) != 0) & (context.builtin(Silence()) > own_limit(context, limit))
        result: FloatArray = silent.astype(np.float64)
        return result

    expr = CompiledExpr(f"not announced offline, yet silent for {limit:g} s", evaluate, frozenset(), (), {})
    return _rule(profile, "silent", expr, "DQ-SILENT",
                 ("Appliance stopped reporting", "设备停止上报数据"),
                 ("The appliance stopped sending data without saying goodbye. This is a connection problem until "
                  "shown otherwise, not a fault of the appliance.",
                  "设备未经告知就停止发送数据。在查明之前，这是连接问题，而非设备故障。"),
                 (Cause("Wi-Fi or network module problem", 0.5, "The appliance may be running but unable to report."),
                  Cause("Power cut", 0.3, "Power loss silences the appliance and its network module together."),
                  _WIRING), time_driven=True)


def _offline(profile: Profile) -> Rule:
    """Always-on appliances (a fridge) that are offline for half an hour: food is at risk whatever the cause.
    Others (an AC, a washer) are switched off by their owners, and that is no fault."""

    def evaluate(context: EvalContext) -> FloatArray:
        result: FloatArray = (context.builtin(Online()) == 0).astype(np.float64)
        return result

    expr = CompiledExpr("announced offline (status topic or last will)", evaluate, frozenset(), (), {})
    return _rule(profile, "offline", expr, "DQ-OFFLINE",
                 ("Always-on appliance offline", "常开设备离线"),
                 ("This appliance should never be off, but it has been offline for half an hour.",
                  "该设备应始终运行，但已离线半小时。"),
                 (Cause("Appliance without power (tripped breaker, unplugged)", 0.5,
                        "An always-on appliance that goes offline has usually lost power."),
                  Cause("Wi-Fi or network module problem", 0.4, "The appliance may be running but unable to report."),
                  ), time_driven=True, for_seconds=ALWAYS_ON_OFFLINE_SECONDS)
