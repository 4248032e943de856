"""The gateway's SQLite file (WAL): devices, incidents, tickets, their service steps, and the outbox.

An incident, its ticket, the ticket's first steps and its outbox entry are written in one transaction, so
a ticket exists if and only if its incident does, across crashes. A partial unique index allows one open
episode per (rule, device), so a restart can never open a second ticket for the same fault. The rows of each
aggregate have their own module; `Database` is all of them over one connection and one transaction helper.
"""

from __future__ import annotations

from gateway.store.case_rows import CaseRows
from gateway.store.devices import DeviceRows
from gateway.store.outbox import OutboxRows
from gateway.store.read_models import ReadModels
from gateway.store.schema import (
    SCHEMA_VERSION,
    DeliveryState,
    OpenedIncident,
    OutboxEntry,
    OutboxKind,
    Step,
    StorageError,
)

__all__ = ["SCHEMA_VERSION", "Database", "DeliveryState", "OpenedIncident", "OutboxEntry", "OutboxKind", "Step",
           "StorageError"]


class Database(DeviceRows, CaseRows, OutboxRows, ReadModels):
    """One connection to the gateway database, with the rows of every aggregate."""
