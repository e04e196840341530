"""What a page served on this machine accepts: its own Host and Origin, its token, JSON, small and prompt.

A local page that writes files is reachable by every web page its user visits: a cross-site
"simple" POST needs no preflight, and DNS rebinding makes ``attacker.example`` resolve to
127.0.0.1. :class:`RequestGuard` (pure ASGI, in front of the Starlette app) therefore answers:

- ``421`` when the ``Host`` header is not one of the served ``host:port`` forms (rebinding);
- ``403`` when an ``Origin`` header names another site, or ``Sec-Fetch-Site`` says cross-site;
- ``403`` for a request to ``/api/`` or any write without the per-session token in
  ``X-Align-Token`` (generated at start, embedded in the page; compared in constant time);
- ``415`` for a write whose ``Content-Type`` is not ``application/json``;
- ``400`` for a ``Content-Length`` that is not a whole number (the HTTP parser answers this
  before the app sees it), ``413`` for a declared or streamed body over ``max_body`` bytes,
  without reading it;
- ``408`` when the body has not arrived whole within ``body_timeout_s`` (a slow sender, or a
  ``Content-Length`` larger than what is sent).

The checks run in that order, before the app sees the request, so a refused write never
reaches the file.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "TOKEN_HEADER",
    "GuardSettings",
    "RequestGuard",
    "served_host_names",
]

TOKEN_HEADER = "x-align-token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def served_host_names(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Host`` header values that name this server: the bound address and, on loopback, its aliases."""
    bound = f"[{host}]" if ":" in host else host
    names = {bound} if host not in ("0.0.0.0", "::", "") else set()
    if host in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""):
        names.update(LOOPBACK_NAMES)
    forms = {f"{name}:{port}" for name in names} | {name.lower() for name in extra}
    return frozenset(form.lower() for form in forms)


@dataclass(frozen=True)
class GuardSettings:
    """The served ``host:port`` forms, the session token and the body limits."""

    hosts: frozenset[str]
    token: str
    max_body: int = 1 << 20
    body_timeout_s: float = 10.0

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)


class Refused(Exception):
    """A request the guard answers itself."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RequestGuard:
    """ASGI middleware: refuses what :mod:`this module <align_core.cli.request_guard>` lists, reads the body bounded."""

    def __init__(self, app: ASGIApp, settings: GuardSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.check_headers(scope, headers)
            if scope["method"] in WRITE_METHODS:
                body = await self.read_body(headers, receive)
                receive = _replay(body, receive)
        except Refused as refused:
            response = JSONResponse(
                {"error": str(refused)}, status_code=refused.status, headers={"Connection": "close"}
            )
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def check_headers(self, scope: Scope, headers: dict[str, str]) -> None:
        """Host, Origin, token and content type, in that order."""
        settings = self.settings
        host = headers.get("host", "").strip().lower()
        if host not in settings.hosts:
            shown = sorted(settings.hosts)
            raise Refused(421, f"Host {host!r} is not this server; open it as http://{shown[0]}/")
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in settings.origins:
            raise Refused(403, f"cross-site request from Origin {origin!r} refused")
        if headers.get("sec-fetch-site", "") == "cross-site":
            raise Refused(403, "cross-site request refused")
        writes = scope["method"] in WRITE_METHODS
        if writes or scope["path"].startswith("/api/"):
            if not secrets.compare_digest(headers.get(TOKEN_HEADER, "").encode(), settings.token.encode()):
                raise Refused(403, f"missing or wrong {TOKEN_HEADER} header (reload the page)")
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if writes and media_type != "application/json":
            raise Refused(415, f"Content-Type must be application/json, not {media_type or 'none'!r}")

    async def read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """The whole body, at most ``max_body`` bytes, within ``body_timeout_s``."""
        limit = self.settings.max_body
        declared = headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit()):
            raise Refused(400, f"Content-Length {declared!r} is not a whole number")
        if declared is not None and int(declared) > limit:
            raise Refused(413, f"body of {int(declared)} bytes refused: at most {limit} bytes")
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                return await _bounded_body(receive, limit)
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.settings.body_timeout_s:g} s") from None


async def _bounded_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client went away before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body over {limit} bytes refused")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real one (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
