"""Gateway configuration: frozen dataclasses read once from TOML.

Every error names the file and the dotted key, because the person reading it is
standing next to a gateway with a text editor, not a debugger.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class BrokerConfig:
    """Where the MQTT broker is. An empty `url` starts the embedded broker on loopback. Several URLs separated by
    commas are the nodes of one cluster: the gateway connects to the first that answers, and moves on to the
    next when its node goes away."""

    url: str = ""
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 1883
    embedded_broker: str = "auto"  # auto (mosquitto if installed, else amqtt) | mosquitto | amqtt
    username: str = ""
    password: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_insecure: bool = False
    client_id: str = ""  # "" = "appliance-gateway-" and 12 hex digits derived from the gateway key: stable, unique
    persistent_session: bool = True  # the broker keeps the subscription and queues QoS 1 messages while we are away
    keepalive_seconds: int = 30
    topic_prefix: str = "appliances"
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 5.0
    max_queued_messages: int = 200_000

    @property
    def embedded(self) -> bool:
        return not self.url

    def host_port(self) -> tuple[str, int]:
        return self.endpoints()[0]

    def urls(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]

    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of each node to try, in order."""
        if self.embedded:
            return [(self.embedded_host, self.embedded_port)]
        found = []
        for url in self.urls():
            parts = urlsplit(url)
            default_port = 8883 if parts.scheme == "mqtts" else 1883
            found.append((parts.hostname or "127.0.0.1", parts.port or default_port))
        return found

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.url.startswith("mqtts://")


@dataclass(frozen=True)
class IngestConfig:
    max_payload_bytes: int = 65_536
    max_past_seconds: float = 86_400.0
    max_future_seconds: float = 300.0
    max_devices: int = 20_000  # appliances in all; a new one beyond is dropped (device_limit), logged once
    max_devices_per_type: int = 10_000
    max_meta_length: int = 128  # characters of a meta string


@dataclass(frozen=True)
class WindowConfig:
    """How much recent telemetry each device keeps in memory for rules and evidence."""

    slots: int = 64  # the fewest samples per device; more where a type's rules or their evidence need them
    initial_devices: int = 64


@dataclass(frozen=True)
class RulesConfig:
    paths: tuple[str, ...] = ("rules",)
    profiles: str = "rules/profiles"
    prices: str = "rules/prices.yaml"
    vendor_codes: str = "rules/vendor_codes"


@dataclass(frozen=True)
class StorageConfig:
    database: str = "var/gateway.db"
    key_file: str = "var/gateway.key"
    checkpoint_file: str = ""  # "" = checkpoint.npz beside the database
    checkpoint_seconds: float = 30.0  # how often the windows and pending `for` timers are saved; 0 = never
    checkpoint_max_age_seconds: float = 3600.0  # an older checkpoint is not restored


@dataclass(frozen=True)
class UpstreamConfig:
    url: str = "http://127.0.0.1:8081"
    token: str = ""
    timeout_seconds: float = 10.0
    group_wait_seconds: float = 10.0
    max_queued_tickets: int = 1000
    retry_min_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    max_in_flight: int = 4  # requests to the platform at once


@dataclass(frozen=True)
class ServiceConfig:
    """The service timeline after a ticket is accepted (gateway/service/)."""

    webhook_secret: str = ""  # shared with the platform; "" turns the webhook off (polling only)
    poll_seconds: float = 60.0
    verification_dwell_seconds: float = 86400.0
    reopen_window_seconds: float = 604800.0
    visit_code_attempts: int = 5
    max_silence_seconds: float = 600.0


@dataclass(frozen=True)
class InfluxConfig:
    """An optional InfluxDB v2 (or compatible) write target; off while url is empty."""

    url: str = ""
    token: str = ""
    org: str = ""
    bucket: str = "appliances"
    batch_size: int = 5000
    flush_seconds: float = 1.0
    max_buffered_samples: int = 1_000_000
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class HistoryConfig:
    """Local 1-minute history in SQLite for the charts."""

    enabled: bool = True
    database: str = ""  # "" = history.db beside storage.database
    days: float = 30.0
    minute_days: float = 1.0  # minutes for this long, then hourly rows until `days`
    max_megabytes: float = 2048.0  # the oldest rows are dropped beyond this (logged)


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str = ""  # "" = the token in admin_token_file, created on first run
    admin_token_file: str = ""  # "" = admin.token beside storage.database
    technician_link_days: float = 7.0


DIALECTS = ("midea", "haier", "open")
_DEFAULT_BAUD = {"midea": 9600, "haier": 9600, "open": 115200}


@dataclass(frozen=True)
class SerialPortConfig:
    """One appliance on a UART: where, which dialect, and who it is (vendor dialects do not say)."""

    url: str = ""
    dialect: str = "open"
    device_id: str = ""
    appliance: str = ""
    brand: str = ""
    model: str = ""
    serial_number: str = ""
    baudrate: int = 0  # 0: the dialect's usual rate (9600 Midea and Haier, 115200 open)
    poll_interval_seconds: float = 1.0
    response_timeout_seconds: float = 0.5
    watchdog_polls: int = 10
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 10.0


@dataclass(frozen=True)
class ClusterConfig:
    """One worker of many on a broker that maps appliance topics into partitions (docs/scaling.md): this worker
    subscribes to `{prefix}/{partition}/{broker.topic_prefix}/+/+` and keeps its own files (`-p{partition}`)."""

    partition: int = -1  # this worker's share, 0 .. partitions - 1; -1: not partitioned (one gateway, all appliances)
    partitions: int = 0
    prefix: str = "p"  # the first topic level of the broker's partition mapping


@dataclass(frozen=True)
class GatewayConfig:
    site: str = "home"
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    web: WebConfig = field(default_factory=WebConfig)
    serial_ports: tuple[SerialPortConfig, ...] = ()
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    source: str = "<defaults>"

    @property
    def partitioned(self) -> bool:
        return self.cluster.partitions > 0


_SECTIONS: dict[str, type[Any]] = {
    "broker": BrokerConfig,
    "ingest": IngestConfig,
    "window": WindowConfig,
    "rules": RulesConfig,
    "storage": StorageConfig,
    "upstream": UpstreamConfig,
    "service": ServiceConfig,
    "history": HistoryConfig,
    "influx": InfluxConfig,
    "web": WebConfig,
    "cluster": ClusterConfig,
}

_POSITIVE_SERIAL = {"poll_interval_seconds", "response_timeout_seconds", "watchdog_polls",
                    "reconnect_min_seconds", "reconnect_max_seconds"}
_POSITIVE = {
    "broker.embedded_port", "broker.keepalive_seconds", "broker.reconnect_min_seconds",
    "broker.reconnect_max_seconds", "broker.max_queued_messages", "ingest.max_payload_bytes",
    "ingest.max_past_seconds", "ingest.max_future_seconds", "ingest.max_devices", "ingest.max_devices_per_type",
    "ingest.max_meta_length", "window.slots", "window.initial_devices",
    "upstream.timeout_seconds", "upstream.retry_min_seconds", "upstream.retry_max_seconds", "upstream.max_in_flight",
    "service.poll_seconds", "service.verification_dwell_seconds", "service.reopen_window_seconds",
    "service.visit_code_attempts", "service.max_silence_seconds", "history.days", "influx.batch_size",
    "influx.flush_seconds", "influx.max_buffered_samples", "influx.timeout_seconds", "web.technician_link_days",
    "storage.checkpoint_max_age_seconds", "history.minute_days", "history.max_megabytes",
}

# upper bounds, where a larger value is a typo that would exhaust memory or cannot be a port
_AT_MOST = {
    "web.port": 65535, "broker.embedded_port": 65535, "window.slots": 1_000_000, "window.initial_devices": 1_000_000,
    "ingest.max_payload_bytes": 16 * 1024 * 1024, "ingest.max_devices": 10_000_000,
    "ingest.max_devices_per_type": 10_000_000, "ingest.max_meta_length": 65_536,
    "broker.max_queued_messages": 100_000_000, "upstream.max_queued_tickets": 10_000_000,
    "influx.max_buffered_samples": 100_000_000, "influx.batch_size": 1_000_000,
}
_NON_NEGATIVE = {"web.port", "storage.checkpoint_seconds"}  # 0: any free port; no checkpoint


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _shipped_root() -> Path:
    """Where the shipped rules/ and docs/ are: the checkout (or editable install) they live in, or the copy an
    installed wheel carries as package data (setup.py puts it under gateway/shipped/)."""
    if (PROJECT_ROOT / "rules" / "profiles").is_dir():
        return PROJECT_ROOT
    return Path(str(importlib.resources.files("gateway") / "shipped"))


SHIPPED_ROOT = _shipped_root()
EMBEDDED_BROKERS = ("auto", "mosquitto", "amqtt")


def resolve_path(config: GatewayConfig, value: str, existing: bool = False) -> Path:
    """Relative paths are relative to the config file (or, without one, the working folder). Inputs that
    must exist (`existing`: rules, profiles) fall back to the shipped ones (SHIPPED_ROOT), so the shipped rules
    are found wherever the gateway is started from."""
    path = Path(value)
    if path.is_absolute():
        return path
    source = Path(config.source)
    base = source.parent if source.is_file() else Path.cwd()
    if existing and not (base / path).exists() and (SHIPPED_ROOT / path).exists():
        return SHIPPED_ROOT / path
    return base / path


def load_config(path: str | Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> GatewayConfig:
    """Read a TOML file into a GatewayConfig; `None` gives the embedded defaults. `overrides` (the command
    line's) replace keys of the file's sections and are checked like them."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        file = Path(path)
        source = str(file)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        if values:
            merged = raw.get(section, {})
            raw[section] = {**merged, **values} if isinstance(merged, dict) else merged
    return config_from_dict(raw, source=source)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> GatewayConfig:
    errors: list[str] = []
    top: dict[str, Any] = {"source": source}
    for key, value in raw.items():
        if key == "site":
            if isinstance(value, str) and value:
                top["site"] = value
            else:
                errors.append(f"{source}: key 'site' must be a non-empty string")
        elif key == "serial":
            top["serial_ports"] = _serial_ports(value, source, errors)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                errors.append(f"{source}: key '{key}' must be a table ([{key}])")
                continue
            top[key] = _section(key, _SECTIONS[key], value, source, errors)
        else:
            errors.append(f"{source}: unknown key '{key}' (known: site, serial, {', '.join(_SECTIONS)})")
    if errors:
        raise ConfigError("\n".join(errors))
    config = GatewayConfig(**top)
    _check_relations(config, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return _for_partition(config) if config.partitioned else config


def _for_partition(config: GatewayConfig) -> GatewayConfig:
    """A worker's own share of the broker's topics, and its own files, so that N workers can share one config
    and one folder: `gateway.db` becomes `gateway-p0.db`, and so on (the owner's token file stays shared)."""
    part = config.cluster.partition
    broker = replace(config.broker, topic_prefix=f"{config.cluster.prefix}/{part}/{config.broker.topic_prefix}",
                     client_id=f"{config.broker.client_id}-p{part}" if config.broker.client_id else "")
    storage = replace(config.storage, database=_with_part(config.storage.database, part),
                      key_file=_with_part(config.storage.key_file, part),
                      checkpoint_file=_with_part(config.storage.checkpoint_file, part))
    history = replace(config.history, database=_with_part(config.history.database, part))
    return replace(config, broker=broker, storage=storage, history=history)


def _with_part(path: str, part: int) -> str:
    if not path:
        return path  # derived from the database path, which has the suffix already
    file = Path(path)
    return str(file.with_name(f"{file.stem}-p{part}{file.suffix}"))


def _section(name: str, cls: type[Any], values: dict[str, Any], source: str, errors: list[str]) -> Any:
    known = {f.name: f for f in fields(cls)}
    defaults = cls()
    accepted: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            errors.append(f"{source}: unknown key '{dotted}' (known: {', '.join(known)})")
            continue
        expected = type(getattr(defaults, key))
        checked = _coerce(value, expected)
        if checked is None:
            errors.append(
                f"{source}: key '{dotted}' must be {_type_name(expected)}, got {type(value).__name__} {value!r}"
            )
            continue
        if (dotted in _POSITIVE or (name.startswith("serial.") and key in _POSITIVE_SERIAL)) and checked <= 0:
            errors.append(f"{source}: key '{dotted}' must be greater than 0, got {value!r}")
            continue
        if dotted in _NON_NEGATIVE and checked < 0:
            errors.append(f"{source}: key '{dotted}' must be 0 or more, got {value!r}")
            continue
        if dotted in _AT_MOST and checked > _AT_MOST[dotted]:
            errors.append(f"{source}: key '{dotted}' must be at most {_AT_MOST[dotted]:,}, got {value!r}")
            continue
        accepted[key] = checked
    return replace(defaults, **accepted)


def _serial_ports(value: Any, source: str, errors: list[str]) -> tuple[SerialPortConfig, ...]:
    if not isinstance(value, dict) or set(value) - {"ports"} or not isinstance(value.get("ports", []), list):
        errors.append(f"{source}: key 'serial' takes one key, 'ports': a list of [[serial.ports]] tables")
        return ()
    ports = []
    for index, table in enumerate(value.get("ports", [])):
        name = f"serial.ports[{index}]"
        if not isinstance(table, dict):
            errors.append(f"{source}: key '{name}' must be a table")
            continue
        before = len(errors)
        port = _section(name, SerialPortConfig, table, source, errors)
        for key in ("url", "device_id"):
            if not getattr(port, key):
                errors.append(f"{source}: key '{name}.{key}' is required")
        if port.dialect not in DIALECTS:
            errors.append(f"{source}: key '{name}.dialect' must be one of {list(DIALECTS)}, got {port.dialect!r}")
        if port.dialect in ("midea", "haier") and not port.appliance:
            errors.append(f"{source}: key '{name}.appliance' is required for the {port.dialect} dialect")
        if len(errors) == before:
            baud = port.baudrate or _DEFAULT_BAUD[port.dialect]
            ports.append(replace(port, baudrate=baud))
    names = [p.device_id for p in ports]
    if len(names) != len(set(names)):
        errors.append(f"{source}: two serial ports have the same device_id")
    return tuple(ports)


def _coerce(value: Any, expected: type[Any]) -> Any:
    if expected is bool:
        return value if isinstance(value, bool) else None
    if expected is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None
    if expected is str:
        return value if isinstance(value, str) else None
    if expected is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return None
    return None


def _type_name(expected: type[Any]) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            tuple: "a list of strings"}.get(expected, expected.__name__)


def _check_relations(config: GatewayConfig, errors: list[str]) -> None:
    src = config.source
    url = config.broker.url
    for one in config.broker.urls():
        if urlsplit(one).scheme not in ("mqtt", "mqtts", "tcp") or not urlsplit(one).hostname:
            errors.append(f"{src}: key 'broker.url' must look like mqtt://host:port or mqtts://host:port (several "
                          f"nodes separated by commas), got {one!r}")
    if url and not config.broker.urls():
        errors.append(f"{src}: key 'broker.url' names no broker: {url!r}")
    cluster = config.cluster
    if cluster.partitions or cluster.partition != -1:
        if not 1 <= cluster.partitions <= 1024 or not 0 <= cluster.partition < cluster.partitions:
            errors.append(f"{src}: keys 'cluster.partition' and 'cluster.partitions' must satisfy 0 <= partition < "
                          f"partitions <= 1024, got partition {cluster.partition} of {cluster.partitions}")
        elif not url:
            errors.append(f"{src}: a partition (cluster.partition) is a share of an external broker's appliances: "
                          "set broker.url (a NATS cluster with the partition mapping, docs/scaling.md)")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", cluster.prefix):
        errors.append(f"{src}: key 'cluster.prefix' must be 1-32 letters, digits, - or _, got {cluster.prefix!r}")
    if config.broker.embedded_broker not in EMBEDDED_BROKERS:
        errors.append(f"{src}: key 'broker.embedded_broker' must be one of {', '.join(EMBEDDED_BROKERS)}, "
                      f"got {config.broker.embedded_broker!r}")
    if config.broker.reconnect_min_seconds > config.broker.reconnect_max_seconds:
        errors.append(f"{src}: key 'broker.reconnect_min_seconds' must not exceed 'broker.reconnect_max_seconds'")
    influx = urlsplit(config.influx.url)
    if config.influx.url and (influx.scheme not in ("http", "https") or not influx.hostname):
        errors.append(f"{src}: key 'influx.url' must be an http:// or https:// URL, or empty (off), "
                      f"got {config.influx.url!r}")
    if urlsplit(config.upstream.url).scheme not in ("http", "https"):
        errors.append(f"{src}: key 'upstream.url' must be an http:// or https:// URL, got {config.upstream.url!r}")
    if not config.rules.paths:
        errors.append(f"{src}: key 'rules.paths' must name at least one rule folder or file")
