from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway.toml"


def test_defaults_use_the_embedded_broker() -> None:
    config = GatewayConfig()
    assert config.broker.embedded and config.broker.host_port() == ("127.0.0.1", 1883)


def test_shipped_example_matches_the_defaults() -> None:
    loaded = load_config(EXAMPLE)
    assert loaded.broker == GatewayConfig().broker
    assert loaded.upstream == GatewayConfig().upstream
    assert loaded.ingest == GatewayConfig().ingest


def test_external_broker_url(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[broker]\nurl = "mqtts://broker.local"\nusername = "gw"\n')
    config = load_config(path)
    assert not config.broker.embedded
    assert config.broker.host_port() == ("broker.local", 8883)
    assert config.broker.uses_tls


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[broker]\nport = 1883\n', "unknown key 'broker.port'"),
        ('[ingest]\nmax_payload_bytes = "big"\n', "key 'ingest.max_payload_bytes' must be a whole number"),
        ('[ingest]\nmax_payload_bytes = 0\n', "key 'ingest.max_payload_bytes' must be greater than 0"),
        ('[broker]\nurl = "http://x"\n', "key 'broker.url' must look like mqtt://"),
        ('[upstream]\nurl = "ftp://x"\n', "key 'upstream.url' must be an http"),
        ('colour = "red"\n', "unknown key 'colour'"),
        ('broker = 3\n', "key 'broker' must be a table"),
        ('[web\n', "not valid TOML"),
        ('[web]\nport = -1\n', "key 'web.port' must be 0 or more"),
        ('[web]\nport = 70000\n', "key 'web.port' must be at most 65,535"),
        ('[window]\nslots = 100000000\n', "key 'window.slots' must be at most"),
        ('[window]\nslots = 1e8\n', "key 'window.slots' must be a whole number"),
        ('[influx]\nurl = "not a url"\n', "key 'influx.url' must be an http"),
        ('[ingest]\nmax_devices = 0\n', "key 'ingest.max_devices' must be greater than 0"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_all_errors_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[web]\nport = "x"\nhost = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "web.port" in str(info.value) and "web.host" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/gateway.toml")


def test_relative_paths_follow_the_config_file_and_shipped_rules_are_found(tmp_path: Path) -> None:
    from gateway.config import PROJECT_ROOT, resolve_path

    path = tmp_path / "gateway.toml"
    path.write_text('[storage]\ndatabase = "data/gw.db"\n')
    config = load_config(path)
    assert resolve_path(config, config.storage.database) == tmp_path / "data" / "gw.db"
    assert resolve_path(config, config.rules.profiles, existing=True) == PROJECT_ROOT / "rules" / "profiles"
    (tmp_path / "rules").mkdir()
    assert resolve_path(config, "rules", existing=True) == tmp_path / "rules"  # a local folder wins
