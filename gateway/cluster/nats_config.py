"""NATS server configs for a partitioned fleet: each node speaks MQTT (the appliances and the workers are MQTT
clients), keeps sessions and retained messages in JetStream, joins the others over routes, and maps every
appliance topic deterministically into one of N partitions by its device id. Pure: text in, text out.

Appliances keep publishing to `appliances/<id>/<kind>`; NATS turns that into the subject
`appliances.<id>.<kind>` and the mapping into `p.<k>.appliances.<id>.<kind>`, k = hash(<id>) mod N, so the worker
of partition k subscribes to `p/<k>/appliances/+/+` and hears every message of its appliances, and only theirs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NatsLayout:
    """N nodes on one host, node i on each base port + i (several hosts: edit `listen` and `routes`)."""

    nodes: int = 3
    partitions: int = 2
    host: str = "127.0.0.1"
    client_port: int = 4222
    mqtt_port: int = 1883
    route_port: int = 6222
    store_dir: str = "var/nats"
    topic_prefix: str = "appliances"  # the gateway's broker.topic_prefix
    partition_prefix: str = "p"  # the gateway's cluster.prefix
    cluster_name: str = "appliances"

    @property
    def replicas(self) -> int:
        """JetStream replicas of the MQTT sessions' streams: 3 where there are 3 nodes, so a node may die."""
        return 3 if self.nodes >= 3 else 1

    def mqtt_urls(self) -> str:
        """Every node's MQTT listener, for the gateway's `broker.url` (it moves to the next when one dies)."""
        return ",".join(f"mqtt://{self.host}:{self.mqtt_port + i}" for i in range(self.nodes))


def partition_mapping(layout: NatsLayout) -> str:
    """The subject mapping: the first wildcard (the device id) picks the partition, so all of one appliance's
    topics (meta, status, telemetry, events) reach the same worker."""
    subject = layout.topic_prefix.replace("/", ".")
    return (f'"{subject}.*.*": "{layout.partition_prefix}.{{{{partition({layout.partitions},1)}}}}.{subject}.'
            '{{wildcard(1)}}.{{wildcard(2)}}"')


def node_config(layout: NatsLayout, index: int) -> str:
    if not 0 <= index < layout.nodes:
        raise ValueError(f"node {index} is not one of 0 .. {layout.nodes - 1}")
    host = layout.host
    lines = [
        f"# node {index} of {layout.nodes}: appliance topics mapped into {layout.partitions} partitions",
        f"server_name: n{index}",
        f"listen: {host}:{layout.client_port + index}",
        f'jetstream {{ store_dir: "{layout.store_dir}/n{index}" }}',
        "# MQTT sessions (QoS 1 subscriptions) and retained messages live in JetStream; with 3 replicas they",
        "# survive the loss of a node. max_ack_pending bounds the QoS 1 messages in flight to one subscriber.",
        f"mqtt {{ listen: {host}:{layout.mqtt_port + index}, stream_replicas: {layout.replicas}, "
        f"consumer_replicas: {layout.replicas}, max_ack_pending: 10000, ack_wait: \"30s\" }}",
    ]
    if layout.nodes > 1:
        routes = ", ".join(f"nats-route://{host}:{layout.route_port + j}" for j in range(layout.nodes) if j != index)
        lines.append(f"cluster {{ name: {layout.cluster_name}, listen: {host}:{layout.route_port + index}, "
                     f"routes: [{routes}] }}")
    lines.append(f"mappings = {{ {partition_mapping(layout)} }}")
    return "\n".join(lines) + "\n"
