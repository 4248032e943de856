"""Polling fallback for service steps: a webhook cannot always reach a gateway behind a home router.

Every `service.poll_seconds` the gateway asks the platform for each followed ticket (GET /v1/tickets/{id})
and applies the platform's steps it does not have yet; the event id makes a step seen by webhook and by
poll count once. A ticket is followed until the customer confirms it, for at most FOLLOW_DAYS after delivery.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from gateway.config import ServiceConfig, UpstreamConfig
from gateway.service.timeline import ServiceDesk, ServiceError
from gateway.store.db import StorageError

log = logging.getLogger("gateway.service")
FOLLOW_DAYS = 90


class PlatformFollower:
    def __init__(self, desk: ServiceDesk, upstream: UpstreamConfig, config: ServiceConfig) -> None:
        self.desk = desk
        self.upstream = upstream
        self.config = config
        self.polls = 0
        self.poll_errors = 0

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.upstream.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(self.config.poll_seconds)
                await self.poll_once(session)

    async def poll_once(self, session: aiohttp.ClientSession) -> int:
        """Fetch every followed ticket once; returns how many new steps were recorded."""
        recorded = 0
        try:
            followed = self.desk.db.tickets_to_follow(self.desk.clock.now() - FOLLOW_DAYS * 86400)
        except StorageError as exc:
            log.error("cannot read the tickets to follow: %s", exc)
            return 0
        headers = {"Authorization": f"Bearer {self.upstream.token}"} if self.upstream.token else {}
        for _ticket_id, platform_id in followed:
            url = f"{self.upstream.url.rstrip('/')}/v1/tickets/{platform_id}"
            self.polls += 1
            try:
                async with session.get(url, headers=headers) as response:
                    if response.status != 200:
                        self.poll_errors += 1
                        continue
                    body = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self.poll_errors += 1
                log.debug("polling %s failed: %s", url, exc)
                continue
            steps = body.get("steps", []) if isinstance(body, dict) else []
            for event in steps if isinstance(steps, list) else []:
                if not isinstance(event, dict) or event.get("origin") != "platform":
                    continue  # the steps the gateway itself reported come back here too
                try:
                    recorded += self.desk.apply_platform_event({**event, "ticket_id": platform_id}, "poll")
                except (ServiceError, StorageError) as exc:
                    log.warning("platform step %s on %s not recorded: %s", event.get("event_id"), platform_id, exc)
        return recorded
