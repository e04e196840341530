"""``align-pretest serve``: the participant's page and the endpoints its records go to.

Starlette on one uvicorn process, bound to 127.0.0.1 by default (behind a reverse proxy for a
crowd platform: docs/pretest.md). Every request passes :class:`PretestGuard` (the annotation
server's :class:`~align_core.cli.request_guard.RequestGuard` limits: served Host and Origin
only, JSON writes, bodies up to 1 MiB that arrive within 10 s, refused by their declared size
without being read), then the app checks the session token (``X-Pretest-Token``, the HMAC of
the session id), the record's schema (:mod:`align_core.pretest.records`) and that it fits the
session's plan. An accepted record is appended and fsync'ed before the answer
(:class:`~align_core.pretest.store.SessionStore`); a replayed ``batch_id`` answers
``{"duplicate": true}`` and writes nothing. Refusals are 4xx with the reason, logged. No IP
address or user agent is ever written; crowd ids only as salted hashes.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from align_core.cli.request_guard import GuardSettings, Refused, RequestGuard, served_host_names
from align_core.pretest.design import least_filled_list, seeded_order
from align_core.pretest.page import render_page
from align_core.pretest.records import PostedRecord, SessionStart
from align_core.pretest.store import HEX_ID, SessionStore, UnknownSession, hash_crowd_ids, now_iso, session_token
from align_core.pretest.study import load_study, write_secret_file

__all__ = [
    "TOKEN_HEADER",
    "PretestApp",
    "PretestGuard",
    "guarded_app",
]

LOG = logging.getLogger("align_core.pretest")
TOKEN_HEADER = "x-pretest-token"
SECRET_FILE = "secret"
#: Slack on media times: a frame callback can report a time a little past the clip's last frame.
MEDIA_TIME_SLACK_S = 0.5
SAFE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}
RECORD_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(PostedRecord)


class PretestGuard(RequestGuard):
    """The annotation server's guard without its one page token (each session has its own) and
    with ``https://`` origins for a proxied host; every refusal is logged with its reason."""

    def check_headers(self, scope: Scope, headers: dict[str, str]) -> None:
        try:
            host = headers.get("host", "").strip().lower()
            if host not in self.settings.hosts:
                raise Refused(421, f"Host {host!r} is not served here (see --allow-host)")
            origin = headers.get("origin")
            allowed = {f"{scheme}://{h}" for h in self.settings.hosts for scheme in ("http", "https")}
            if origin is not None and origin.lower() not in allowed:
                raise Refused(403, f"cross-site request from Origin {origin!r} refused")
            if headers.get("sec-fetch-site", "") == "cross-site":
                raise Refused(403, "cross-site request refused")
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if scope["method"] == "POST" and media_type != "application/json":
                raise Refused(415, f"Content-Type must be application/json, not {media_type or 'none'!r}")
        except Refused as refused:
            LOG.warning("refused %s %s: %s %s", scope["method"], scope["path"], refused.status, refused)
            raise

    async def read_body(self, headers: dict[str, str], receive: Any) -> bytes:
        try:
            return await super().read_body(headers, receive)
        except Refused as refused:
            LOG.warning("refused body: %s %s", refused.status, refused)
            raise


def refuse(status: int, reason: str, where: str) -> JSONResponse:
    LOG.warning("refused %s: %s %s", where, status, reason)
    return JSONResponse({"error": reason}, status_code=status, headers=SAFE_HEADERS)


class PretestApp:
    """One study's page, media and record endpoints."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.study = load_study(self.folder)
        self.salt = (self.folder / self.study["salt_file"]).read_text().strip()
        self.secret = write_secret_file(self.folder / SECRET_FILE)
        self.store = SessionStore(self.folder / "sessions")
        self.videos = {v["video_id"]: v for v in self.study["videos"]}
        self.media = {v["media"] for video in self.study["videos"] for v in video["variants"]}
        self.media.add(self.study["practice_media"])
        self.start_lock = threading.Lock()
        self.start_replies: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.page = render_page(self.study)

    def app(self) -> Starlette:
        routes = [
            Route("/", self.index, methods=["GET"]),
            Route("/media/{path:path}", self.media_file, methods=["GET"]),
            Route("/api/sessions", self.start, methods=["POST"]),
            Route("/api/sessions/{session_id}/records", self.record, methods=["POST"]),
            Route("/api/sessions/{session_id}/withdraw", self.withdraw, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=SAFE_HEADERS)

    def media_file(self, request: Request) -> Response:
        name = "media/" + request.path_params["path"]
        if name not in self.media:
            return refuse(404, f"no media {name!r} in this study", "media")
        return FileResponse(self.folder / name, media_type="video/mp4", headers={"Cache-Control": "no-store"})

    async def start(self, request: Request) -> Response:
        try:
            posted = SessionStart.model_validate_json(await request.body())
        except pydantic.ValidationError as exc:
            return refuse(400, _short(exc), "session start")
        return JSONResponse(await run_in_threadpool(self.start_session, posted), headers=SAFE_HEADERS)

    def start_session(self, posted: SessionStart) -> dict[str, Any]:
        """A new session (the least-filled list, order seeded) or, for a retried start, the same one,
        also when the retry reaches a restarted server."""
        with self.start_lock:
            if posted.batch_id in self.start_replies:
                return self.start_replies[posted.batch_id]
            openings = self.store.openings()
            retried = next((sid for sid, opening in openings.items() if opening.batch_id == posted.batch_id), None)
            if retried is not None:
                return self.remember_start(posted.batch_id, retried, self.plan_of(retried))
            list_index = least_filled_list((o.list_index for o in openings.values()), len(self.study["lists"]))
            session_id = secrets.token_hex(16)
            plan = self.session_plan(session_id, list_index)
            record = {
                "kind": "session",
                "session_id": session_id,
                "batch_id": posted.batch_id,
                "received_at": now_iso(),
                "list_index": list_index,
                "crowd": hash_crowd_ids(self.salt, posted.crowd),
                "started_at": now_iso(),
                "plan": plan,
            }
            self.store.create(session_id, record)
            self.plans[session_id] = plan
            return self.remember_start(posted.batch_id, session_id, plan)

    def remember_start(self, batch_id: str, session_id: str, plan: dict[str, Any]) -> dict[str, Any]:
        """The reply to a session start, kept for a retry of the same batch."""
        reply = {"session_id": session_id, "token": session_token(self.secret, session_id), "plan": plan}
        if len(self.start_replies) > 10_000:
            self.start_replies.clear()
        self.start_replies[batch_id] = reply
        return reply

    def session_plan(self, session_id: str, list_index: int) -> dict[str, Any]:
        """What this participant sees, in order: the list's trials shuffled, checks and realism pairs."""
        study, design = self.study, self.study["design_sha256"]
        cells = study["lists"][list_index]
        order = seeded_order(len(cells), design, session_id, "trials")
        checked = set(seeded_order(len(cells), design, session_id, "checks")[: study["attention_checks"]])
        trials = []
        for index, cell_index in enumerate(order):
            cell = cells[cell_index]
            video = self.videos[cell["video_id"]]
            duration = video["n_frames"] / video["fps"]
            check = None
            if index in checked:
                spots = seeded_order(100, design, session_id, f"check{index}")
                check = {"at_s": round(duration * (0.3 + 0.4 * spots[0] / 100), 3), "x": 0.2 + 0.6 * spots[1] / 100}
                check["y"] = 0.2 + 0.6 * spots[2] / 100
            media = f"media/{cell['video_id']}/{cell['variant']}.mp4"
            trials.append({**cell, "trial_index": index, "media": media, "duration_s": duration, "check": check})
        return {
            "trials": trials,
            "realism": self.realism_plan(session_id, cells),
            "practice_media": study["practice_media"],
        }

    def realism_plan(self, session_id: str, cells: list[dict[str, str]]) -> list[dict[str, Any]]:
        realism = self.study["realism"]
        if not realism["enabled"]:
            return []
        control = self.study["variants"][0]
        edited = [c for c in cells if c["variant"] != control]
        order = seeded_order(len(edited), self.study["design_sha256"], session_id, "realism")
        pairs = []
        for index, cell_index in enumerate(order[: realism["trials_per_participant"]]):
            cell = edited[cell_index]
            left_is_edited = seeded_order(2, self.study["design_sha256"], session_id, f"side{index}")[0] == 1
            sides = [cell["variant"], control] if left_is_edited else [control, cell["variant"]]
            pairs.append(
                {
                    **cell,
                    "realism_index": index,
                    "mode": realism["mode"],
                    "left": sides[0],
                    "media": [f"media/{cell['video_id']}/{side}.mp4" for side in sides],
                }
            )
        return pairs

    def plan_of(self, session_id: str) -> dict[str, Any]:
        plan = self.plans.get(session_id)
        if plan is None:
            plan = self.plans[session_id] = self.store.records(session_id)[0]["plan"]
        return plan

    def authorised(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        """The session id of the URL, when well formed and the token is its own."""
        session_id = request.path_params["session_id"]
        if not HEX_ID.match(session_id):
            return None, refuse(400, "session id must be 32 lowercase hex characters", "record")
        expected = session_token(self.secret, session_id)
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), expected.encode()):
            return None, refuse(403, f"the {TOKEN_HEADER} header is not this session's token", session_id)
        return session_id, None

    async def record(self, request: Request) -> Response:
        session_id, refused = self.authorised(request)
        if refused is not None or session_id is None:
            return refused or refuse(400, "no session", "record")
        try:
            posted = RECORD_ADAPTER.validate_json(await request.body())
        except pydantic.ValidationError as exc:
            return refuse(400, _short(exc), session_id)
        return await run_in_threadpool(self.store_record, session_id, posted.model_dump())

    def store_record(self, session_id: str, record: dict[str, Any]) -> Response:
        try:
            plan = self.plan_of(session_id)
            extra = self.check_against_plan(plan, record)
        except UnknownSession as exc:
            return refuse(404, str(exc), session_id)
        except ValueError as exc:
            return refuse(422, str(exc), session_id)
        line = {**record, **extra, "session_id": session_id, "received_at": now_iso()}
        try:
            written = self.store.append(session_id, line)
        except UnknownSession as exc:
            return refuse(404, str(exc), session_id)
        reply: dict[str, Any] = {"ok": True, "duplicate": not written}
        if record["kind"] == "complete":
            reply["completion_code"] = self.study["completion_code"]
        return JSONResponse(reply, headers=SAFE_HEADERS)

    def check_against_plan(self, plan: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """Fields the server adds; ValueError when the record does not fit the session's plan."""
        kind = record["kind"]
        if kind == "complete":
            return {"completion_code": self.study["completion_code"]}
        if kind == "realism":
            pairs = plan["realism"]
            index = record["realism_index"]
            if index >= len(pairs) or (pairs[index]["video_id"], pairs[index]["variant"]) != (
                record["video_id"],
                record["variant"],
            ):
                raise ValueError(
                    f"realism trial {index} of this session is not {record['video_id']}/{record['variant']}"
                )
            left = pairs[index]["left"]
            correct = (
                None
                if record["choice"] is None
                else (record["choice"] == "left") == (left != self.study["variants"][0])
            )
            return {"left": left, "correct": correct}
        trials = plan["trials"]
        index = record["trial_index"]
        if record.get("practice"):
            duration = 3600.0
        else:
            if index >= len(trials) or (trials[index]["video_id"], trials[index]["variant"]) != (
                record.get("video_id", trials[index]["video_id"]),
                record.get("variant", trials[index]["variant"]),
            ):
                raise ValueError(
                    f"trial {index} of this session is not {record.get('video_id')}/{record.get('variant')}"
                )
            duration = trials[index]["duration_s"]
        times = [s[0] for s in record.get("samples", ())] + (
            [record["shown_at_s"]] if kind == "attention_check" else []
        )
        late = [t for t in times if t > duration + MEDIA_TIME_SLACK_S]
        if late:
            raise ValueError(f"media time {max(late):.3f} s is past the clip's {duration:.3f} s")
        return {}

    def withdraw_session(self, session_id: str) -> bool:
        """Delete the session's file and forget it: a retried start of its batch starts a new session."""
        removed = self.store.withdraw(session_id)
        with self.start_lock:
            self.plans.pop(session_id, None)
            for batch_id in [b for b, reply in self.start_replies.items() if reply["session_id"] == session_id]:
                del self.start_replies[batch_id]
        return removed

    async def withdraw(self, request: Request) -> Response:
        session_id, refused = self.authorised(request)
        if refused is not None or session_id is None:
            return refused or refuse(400, "no session", "withdraw")
        removed = await run_in_threadpool(self.withdraw_session, session_id)
        LOG.info("session %s withdrawn (file %s)", session_id, "deleted" if removed else "already gone")
        return JSONResponse({"ok": True, "withdrawn": removed}, headers=SAFE_HEADERS)


def guarded_app(
    pretest: PretestApp, host: str, port: int, allow_hosts: Iterable[str] = (), max_body: int = 1 << 20
) -> PretestGuard:
    """The study's app behind the guard, for ``host:port`` (and any proxied ``allow_hosts``)."""
    settings = GuardSettings(served_host_names(host, port, allow_hosts), "", max_body)
    return PretestGuard(pretest.app(), settings)


def _short(exc: pydantic.ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    return (
        "invalid record: "
        + "; ".join(problems)
        + (f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else "")
    )
