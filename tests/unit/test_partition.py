"""A worker of a partitioned fleet (docs/scaling.md): its config, the NATS configs, its tickets. Pure logic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cluster.nats_config import NatsLayout, node_config, partition_mapping
from gateway.cluster.workers import fleet_page, rotated, worker_args
from gateway.config import ConfigError, config_from_dict, load_config
from gateway.outbox.mapping import ticket_payload
from gateway.protocol.topics import parse_topic, subscription
from gateway.web.pages import gateway_page

NODES = "mqtt://10.0.0.1:1883, mqtt://10.0.0.2:1884,mqtt://10.0.0.3"


def test_a_worker_subscribes_to_its_partition_and_keeps_its_own_files() -> None:
    config = config_from_dict({"broker": {"url": NODES}, "cluster": {"partition": 1, "partitions": 3},
                               "storage": {"database": "var/gw.db", "key_file": "var/gw.key"},
                               "web": {"port": 8090}})
    assert config.web.port == 8090, "a worker's console port is its own config's (cluster passes --web-port)"
    assert subscription(config.broker.topic_prefix) == "p/1/appliances/+/+"
    assert (config.storage.database, config.storage.key_file) == ("var/gw-p1.db", "var/gw-p1.key")
    assert config.storage.checkpoint_file == "" and config.history.database == "", "beside the database"
    assert config.broker.endpoints() == [("10.0.0.1", 1883), ("10.0.0.2", 1884), ("10.0.0.3", 1883)]
    topic = parse_topic("p/1/appliances/ac-7/telemetry", config.broker.topic_prefix)
    assert topic is not None and topic.device_id == "ac-7"
    assert parse_topic("p/0/appliances/ac-7/telemetry", config.broker.topic_prefix) is None


def test_an_unpartitioned_gateway_is_unchanged() -> None:
    config = config_from_dict({"broker": {"url": "mqtt://b"}})
    assert not config.partitioned and config.broker.topic_prefix == "appliances"
    assert config.storage.database == "var/gateway.db"


@pytest.mark.parametrize(("cluster", "broker", "message"), [
    ({"partition": 2, "partitions": 2}, "mqtt://b", "0 <= partition < partitions"),
    ({"partition": 0, "partitions": 0}, "mqtt://b", "0 <= partition < partitions"),
    ({"partition": 0, "partitions": 2}, "", "set broker.url"),
    ({"partition": 0, "partitions": 2, "prefix": "a/b"}, "mqtt://b", "cluster.prefix"),
])
def test_a_partition_that_cannot_work_is_refused(cluster: dict[str, object], broker: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"broker": {"url": broker}, "cluster": cluster})


def test_every_url_of_a_node_list_is_checked() -> None:
    with pytest.raises(ConfigError, match="'http://x'"):
        config_from_dict({"broker": {"url": "mqtt://a:1883,http://x"}})


def test_command_line_keys_are_checked_like_the_files(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[broker]\nurl = "mqtt://b"\n[web]\nport = 9000\n')
    config = load_config(path, {"cluster": {"partition": 1, "partitions": 2}, "web": {"port": 7000}})
    assert config.web.port == 7000 and config.broker.topic_prefix == "p/1/appliances"
    with pytest.raises(ConfigError, match=re.escape("broker.url")):
        load_config(path, {"broker": {"url": "not a url"}})


def test_nats_node_configs_route_to_each_other_and_map_by_device_id() -> None:
    layout = NatsLayout(nodes=3, partitions=4, client_port=4222, mqtt_port=1883, route_port=6222, store_dir="/s")
    text = node_config(layout, 1)
    assert "server_name: n1" in text and "listen: 127.0.0.1:4223" in text and 'store_dir: "/s/n1"' in text
    assert "mqtt { listen: 127.0.0.1:1884, stream_replicas: 3, consumer_replicas: 3" in text
    assert "routes: [nats-route://127.0.0.1:6222, nats-route://127.0.0.1:6224]" in text
    assert partition_mapping(layout) == ('"appliances.*.*": "p.{{partition(4,1)}}.appliances.{{wildcard(1)}}.'
                                         '{{wildcard(2)}}"')
    assert layout.mqtt_urls() == "mqtt://127.0.0.1:1883,mqtt://127.0.0.1:1884,mqtt://127.0.0.1:1885"
    single = node_config(NatsLayout(nodes=1), 0)
    assert "cluster {" not in single and "stream_replicas: 1" in single
    with pytest.raises(ValueError):
        node_config(layout, 3)


def test_workers_start_on_different_nodes() -> None:
    assert rotated("a,b,c", 0) == "a,b,c" and rotated("a,b,c", 1) == "b,c,a" and rotated("a,b,c", 4) == "b,c,a"
    args = worker_args(Path("g.toml"), 1, 2, "a,b", 8090)
    assert args[-2:] == ["--config", "g.toml"] and "--partition" in args and args[args.index("--broker") + 1] == "b,a"


def test_the_fleet_page_escapes_what_workers_report() -> None:
    page = fleet_page([{"partition": 0, "pid": 1, "starts": 1, "console": "http://127.0.0.1:8090", "error": "<x>",
                        "mqtt_connected": True, "mqtt_node": "n:1", "devices": 3, "samples": 9,
                        "open_incidents": 0, "tickets_delivered": 1}])
    assert "&lt;x&gt;" in page and "<x>" not in page and "width=device-width" in page


def test_a_workers_ticket_names_its_partition_and_not_in_its_key() -> None:
    finding = {"rule": "r", "code": "C", "title": {"en": "t"}, "severity": "major", "category": "component",
               "explanation": "e", "onset_ts": 1.0, "detected_ts": 2.0, "service_items": [], "checks": [],
               "parts": [], "evidence": {"observed": {}}, "causes": [], "ruled_out": []}
    ticket = ticket_payload(site="s", device_id="d", appliance_type="washer", device=None, findings=[finding],
                            fingerprint="k", opened_at=1.0, partition=(1, 2))
    assert ticket["worker"] == {"partition": 1, "partitions": 2} and ticket["idempotency_key"] == "k"
    alone = ticket_payload(site="s", device_id="d", appliance_type="washer", device=None, findings=[finding],
                           fingerprint="k", opened_at=1.0)
    assert "worker" not in alone


def test_the_gateway_page_names_the_workers_partition() -> None:
    page = gateway_page({"partition": {"partition": 1, "partitions": 2, "subscription": "p/1/<x>/+/+"}}, {})
    assert 'id="partition">worker 1 of 2: the appliances on p/1/&lt;x&gt;/+/+' in page
    assert 'id="partition"' not in gateway_page({"partition": None}, {})
