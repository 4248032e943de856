"""UART dialect adapters: what to poll, how to match answers, and how decoded frames become canonical records.

The records are the same telemetry / meta / event documents an appliance would publish over MQTT, so serial
data goes through the one ingest path: same validation, same drop counters, same rules.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.engine.profiles import Profile
from gateway.protocol import haier, midea, open_dialect
from gateway.protocol.stream import StreamDecoder
from gateway.protocol.topics import TopicKind

Record = tuple[TopicKind, dict[str, Any]]

# Matter SystemMode for Midea's operating modes
_MATTER_MODE = {midea.Mode.AUTO: 1, midea.Mode.COOL: 3, midea.Mode.HEAT: 4, midea.Mode.FAN: 7, midea.Mode.DRY: 8}


@dataclass(frozen=True, slots=True)
class Poll:
    frame: bytes
    answer_key: Hashable  # the response_key of the frame that answers it


class UartAdapter(Protocol):
    appliance_type: str

    def decoder(self) -> StreamDecoder[Any]: ...

    def polls(self, counter: int) -> list[Poll]: ...

    def response_key(self, frame: Any) -> Hashable | None: ...

    def records(self, frame: Any, now: float) -> list[Record]:
        """Canonical records for a decoded frame; raises FrameError for a payload that does not decode."""
        ...

    def replies(self, frame: Any, counter: int) -> list[bytes]: ...


class MideaAdapter:
    """Midea split AC: polls state (0xC0) and group 1 (compressor, coil and discharge temperatures)."""

    appliance_type = "air_conditioner"
    # the profile metrics its two answers carry (compressor_on is derived from the frequency)
    carries = frozenset({"occupied_cooling_setpoint", "system_mode", "local_temperature", "outdoor_temperature",
                         "compressor_frequency", "compressor_current", "indoor_coil_temperature",
                         "discharge_temperature"})

    def decoder(self) -> StreamDecoder[Any]:
        return midea.MideaDecoder(midea.AIR_CONDITIONER)

    def polls(self, counter: int) -> list[Poll]:
        return [Poll(midea.state_query(counter).to_bytes(), ("state",)),
                Poll(midea.group_query(1, counter).to_bytes(), ("group", 1))]

    def response_key(self, frame: midea.MideaFrame) -> Hashable | None:
        if frame.message_id == midea.MessageId.STATE:
            return ("state",)
        if frame.message_id == midea.MessageId.GROUP_DATA:
            return ("group", midea.group_of(frame.body))
        return None

    def records(self, frame: midea.MideaFrame, now: float) -> list[Record]:
        if frame.message_id == midea.MessageId.STATE:
            return self._state(midea.decode_state(frame.body), now)
        if frame.message_id == midea.MessageId.GROUP_DATA and midea.group_of(frame.body) == 1:
            group = midea.decode_compressor_group(frame.body)
            return [(TopicKind.TELEMETRY, {"ts": now, "metrics": {
                "compressor_frequency": group.compressor_frequency,
                "compressor_on": 1 if group.compressor_frequency > 0 else 0,
                "compressor_current": group.compressor_current,
                "indoor_coil_temperature": group.indoor_coil_temperature,
                "discharge_temperature": group.discharge_temperature}})]
        return []

    def _state(self, state: midea.ACState, now: float) -> list[Record]:
        metrics: dict[str, float] = {
            "occupied_cooling_setpoint": state.target_temperature,
            "system_mode": _MATTER_MODE.get(state.mode, 0) if state.power_on else 0,
        }
        if state.indoor_temperature is not None:
            metrics["local_temperature"] = state.indoor_temperature
        if state.outdoor_temperature is not None:
            metrics["outdoor_temperature"] = state.outdoor_temperature
        records: list[Record] = [(TopicKind.TELEMETRY, {"ts": now, "metrics": metrics})]
        if state.error_code:
            records.append((TopicKind.EVENT, {"ts": now, "code": f"MIDEA-{state.error_code}",
                                              "source": "midea state error byte"}))
        return records

    def replies(self, frame: midea.MideaFrame, counter: int) -> list[bytes]:
        return []


_WASHER_PHASE = {haier.MachineState.RUNNING: 2, haier.MachineState.READY: 0, haier.MachineState.STANDBY: 0}


class HaierAdapter:
    """Haier washer: listens to the status frames the machine sends on its own (no poll frame is documented)."""

    appliance_type = "washer"
    carries = frozenset({"operational_state"})  # door_locked is derived from it

    def decoder(self) -> StreamDecoder[Any]:
        return haier.HaierDecoder()

    def polls(self, counter: int) -> list[Poll]:
        return []

    def response_key(self, frame: haier.HaierFrame) -> Hashable | None:
        return None

    def records(self, frame: haier.HaierFrame, now: float) -> list[Record]:
        if frame.frame_type in haier.ALARM_TYPES:
            return [(TopicKind.EVENT, {"ts": now, "code": f"HAIER-{frame.frame_type:02X}",
                                       "raw": frame.data.hex(), "interpreted": False})]
        status = haier.decode_washer_status(frame)
        if status is None:
            return []
        running = status.state is haier.MachineState.RUNNING
        return [(TopicKind.TELEMETRY, {"ts": now, "metrics": {"operational_state": 1 if running else 0,
                                                               "door_locked": 1 if running else 0}})]

    def replies(self, frame: haier.HaierFrame, counter: int) -> list[bytes]:
        return []


class OpenAdapter:
    """The open dialect: identify once, then poll telemetry; events are acknowledged and deduplicated.

    Metric ids are looked up in the profile of the appliance type the device identified as."""

    def __init__(self, metric_ids: dict[str, dict[int, str]]) -> None:
        self.appliance_type = ""
        self.metric_ids = metric_ids
        self._identified = False
        self._last_event_seq: int | None = None

    def decoder(self) -> StreamDecoder[Any]:
        self._identified = False
        return open_dialect.OpenDecoder()

    def polls(self, counter: int) -> list[Poll]:
        wanted = open_dialect.MessageType.TELEMETRY if self._identified else open_dialect.MessageType.IDENTIFY
        return [Poll(open_dialect.poll(counter, wanted).to_bytes(), wanted)]

    def response_key(self, frame: open_dialect.OpenFrame) -> Hashable | None:
        return frame.msg_type

    def records(self, frame: open_dialect.OpenFrame, now: float) -> list[Record]:
        kind = open_dialect.MessageType
        if frame.msg_type == kind.IDENTIFY:
            identity = open_dialect.Identify.decode(frame.payload)
            self._identified = True
            self.appliance_type = open_dialect.APPLIANCE_TYPES[identity.appliance]
            return [(TopicKind.META, {"type": self.appliance_type,
                                      "brand": identity.brand, "model": identity.model,
                                      "serial": identity.serial, "firmware": identity.firmware})]
        if frame.msg_type == kind.TELEMETRY:
            values = open_dialect.Telemetry.decode(frame.payload).values
            # an id the profile does not know keeps a name that ingest will count as an unknown metric
            ids = self.metric_ids.get(self.appliance_type, {})
            metrics = {ids.get(i, f"uart_id_{i}"): v for i, v in values}
            document: dict[str, Any] = {"ts": now, "metrics": metrics}
            if self.appliance_type:
                document["type"] = self.appliance_type
            return [(TopicKind.TELEMETRY, document)]
        if frame.msg_type == kind.EVENT and frame.seq != self._last_event_seq:
            self._last_event_seq = frame.seq
            event = open_dialect.Event.decode(frame.payload)
            return [(TopicKind.EVENT, {"ts": now, "code": event.code, "active": event.active})]
        return []

    def replies(self, frame: open_dialect.OpenFrame, counter: int) -> list[bytes]:
        if frame.msg_type == open_dialect.MessageType.EVENT:
            return [open_dialect.ack(counter, frame.seq).to_bytes()]
        return []


def adapter_for(dialect: str, profiles: dict[str, Profile]) -> UartAdapter:
    if dialect == "midea":
        return MideaAdapter()
    if dialect == "haier":
        return HaierAdapter()
    return OpenAdapter({name: profile.metric_by_uart_id() for name, profile in profiles.items()})
