"""Errors of the JSON API as JSON: every answer under /api/ (and /metrics) that is not a success is
`{"error": "..."}` with its status, as docs/web-api.yaml says; pages keep aiohttp's plain answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not is_api(request.path) or exc.status < 400:
            raise
        reason = exc.text if exc.text and exc.content_type == "text/plain" else exc.reason
        error = reason.removeprefix(f"{exc.status}: ").strip()
        return web.json_response({"error": error}, status=exc.status, headers=_kept(exc))


def _kept(exc: web.HTTPException) -> dict[str, str]:
    """Headers the status depends on (Allow for 405, Retry-After for 503)."""
    return {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
