"""Fleet-wide silence on a link that says it is up: the gateway's own deafness, not its appliances'.

A broker can stop delivering to a subscriber that stays connected (a NATS node dies and JetStream moves its
stream leaders; a bridge stalls). The link's state then says "hearing" while nothing arrives, and every
appliance would in turn be "silent". Appliances fail one at a time: when several that were all on schedule at
the moment the last message of all arrived have each missed two of their own reports since, with nothing
from anyone in between, the likelier explanation is the path to the gateway, so silence is not counted until
something arrives again (and then counts from that moment, as after a broker outage).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from gateway.store.window import TypeWindow

MIN_QUIET_TOGETHER = 3  # appliances that fall quiet at the same moment before the gateway doubts itself
ON_SCHEDULE_INTERVALS = 2.0  # an appliance's last sample at most this many of its intervals before the newest
OVERDUE_INTERVALS = 3.0  # ... and now this many of its intervals without a sample (silence needs five)
HEARD_LATELY = 0.25  # a sample of any appliance within this share of the shortest silence limit: not deaf


def quiet_together(windows: Iterable[TypeWindow], now: float) -> int:
    """How many appliances fell quiet together with the newest sample of all and are now overdue; 0 unless
    it is at least MIN_QUIET_TOGETHER (the fleet is heard normally)."""
    windows = list(windows)
    newest = max((w.newest_ts for w in windows), default=-math.inf)
    if now - newest < HEARD_LATELY * min((w.silence_limit for w in windows), default=math.inf):
        return 0  # the common case, without touching the arrays: heard lately, and no silence is near yet
    latest, gaps = [], []
    for window in windows:
        count = len(window.device_ids)
        if not count:
            continue
        reporting = ~np.isnan(window.typical_gap[:count]) & ~np.isnan(window.latest_ts[:count])
        reporting &= window.online[:count] != 0  # an appliance that said goodbye is expected to be quiet
        latest.append(window.latest_ts[:count][reporting])
        gaps.append(window.typical_gap[:count][reporting])
    if not latest:
        return 0
    last_ts = np.concatenate(latest)
    gap = np.concatenate(gaps)
    if len(last_ts) < MIN_QUIET_TOGETHER:
        return 0
    newest = float(last_ts.max())
    together = (last_ts >= newest - ON_SCHEDULE_INTERVALS * gap) & (now - last_ts > OVERDUE_INTERVALS * gap)
    count = int(together.sum())
    return count if count >= MIN_QUIET_TOGETHER else 0
