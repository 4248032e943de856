"""Scale-out: many gateway workers on a NATS cluster, each owning a partition of the appliances
(docs/scaling.md)."""
