import pytest

from gateway.protocol.topics import ApplianceTopic, TopicKind, appliance_topic, parse_topic, topic_matches


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("appliances/ac-01/telemetry", ApplianceTopic("ac-01", TopicKind.TELEMETRY)),
        ("appliances/fridge_2/meta", ApplianceTopic("fridge_2", TopicKind.META)),
        ("appliances/x:y.z/status", ApplianceTopic("x:y.z", TopicKind.STATUS)),
        ("appliances/w1/event", ApplianceTopic("w1", TopicKind.EVENT)),
        ("appliances/ac-01/unknown", None),
        ("appliances/ac-01", None),
        ("appliances/ac-01/telemetry/extra", None),
        ("other/ac-01/telemetry", None),
        ("appliances//telemetry", None),
        ("appliances/bad id/telemetry", None),
    ],
)
def test_parse_topic(topic: str, expected: ApplianceTopic | None) -> None:
    assert parse_topic(topic) == expected


def test_topic_roundtrip_with_custom_prefix() -> None:
    topic = appliance_topic("ac-9", TopicKind.EVENT, prefix="site7")
    assert topic == "site7/ac-9/event"
    assert parse_topic(topic, prefix="site7") == ApplianceTopic("ac-9", TopicKind.EVENT)
    assert parse_topic(topic) is None


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("appliances/+/+", "appliances/a/telemetry", True),
        ("appliances/+/+", "appliances/a/b/c", False),
        ("appliances/#", "appliances/a/b/c", True),
        ("appliances/#", "appliances", True),
        ("#", "$SYS/broker/load", False),
        ("+/x", "$SYS/x", False),
        ("appliances/a/telemetry", "appliances/a/telemetry", True),
        ("appliances/a/telemetry", "appliances/b/telemetry", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(("topic", "expected"), [
    ("p/0/appliances/ac-1/telemetry", ApplianceTopic("ac-1", TopicKind.TELEMETRY)),
    ("p/0/appliances/ac-1/meta", ApplianceTopic("ac-1", TopicKind.META)),
    ("p/1/appliances/ac-1/telemetry", None),
    ("p/0/appliances/x/y/telemetry", None),
    ("p/0/appliances", None),
])
def test_a_prefix_may_have_several_levels(topic: str, expected: ApplianceTopic | None) -> None:
    """A NATS partition mapping puts appliances under p/<partition>/appliances/..."""
    assert parse_topic(topic, "p/0/appliances") == expected
