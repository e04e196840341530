"""``align-annotate``: drag one box per scene in a browser page served on 127.0.0.1; it writes the CSV.

The page shows the first frame of every scene of every video in ``raw/videos`` (scenes as the
video catalog maps them: given in ``alignment_score.csv`` or detected), each on a canvas at the
video's own pixel grid. Drag a box around the product, or tick "no product" for a scene without
it, give it a label if you like, then press Save. Save edits only what the page shows: the
scene-level ``box`` / ``absent`` rows (and labels) of the scenes you changed
(:mod:`align_core.cli.annotate_page`); clicks, frame-level rows, other videos and rows that
cannot be read are kept byte-for-byte, and unreadable rows are listed on the page.

Served by Starlette on uvicorn, bound to 127.0.0.1 by default (the page exposes video frames; it
is not meant for a network), stopped by Ctrl-C or SIGTERM. Every request passes
:class:`~align_core.cli.request_guard.RequestGuard`: its own Host and Origin only, a per-session
token the page sends, JSON bodies up to 1 MiB that arrive within 10 s. The page is the Jinja2
template ``templates/annotate.html`` (autoescaped).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import uvicorn
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from align_core.cli.annotate_page import VideoScenes, edits_from_page, page_listing
from align_core.cli.request_guard import TOKEN_HEADER, GuardSettings, RequestGuard, served_host_names
from align_core.inputs.annotation_file import (
    AnnotationFile,
    AnnotationFileError,
    StaleSceneError,
    apply_scene_edits,
    read_annotation_file,
)
from align_core.inputs.annotations import MASK_NAME, annotation_masks_dir, annotations_path
from align_core.inputs.csv_rows import RowProblem
from align_core.io.layout import DataLayout
from align_core.io.video_io import read_frame
from align_core.settings import add_data_dir_argument

__all__ = [
    "AnnotationServer",
    "main",
]

LOOPBACK = "127.0.0.1"
#: Headers of every answer: never cached, never framed by another site, no referrer sent out.
SAFE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def scenes_of(layout: DataLayout, video_id: str) -> VideoScenes:
    """The video's scenes as the pipeline numbers them (its catalog, else the same mapping built now)."""
    from align_core.inputs.catalog import build_catalog, load_catalog
    from align_core.inputs.research_csvs import read_alignment_scores, read_keywords

    catalog_dir = layout.artifact_dir("video_catalog", video_id)
    try:
        catalog = load_catalog(catalog_dir)
    except FileNotFoundError:
        alignment = read_alignment_scores(layout.alignment_csv) if layout.alignment_csv.exists() else None
        keywords = read_keywords(layout.keywords_csv) if layout.keywords_csv.exists() else None
        catalog = build_catalog(video_id, layout.video_path(video_id), alignment, keywords)
    probe = catalog.probe
    return VideoScenes(video_id, Path(probe.path), probe.width, probe.height, catalog.scene_ranges)


#: The page (HTML, CSS and its script) lives in ``templates/annotate.html`` beside this module.
TEMPLATES = Environment(
    loader=PackageLoader("align_core.cli", "templates"),
    autoescape=True,
    keep_trailing_newline=True,
)


def render_page(csv_name: str, token: str) -> str:
    """The annotation page; ``csv_name`` is the file Save writes to, ``token`` the session's."""
    return TEMPLATES.get_template("annotate.html").render(csv_name=csv_name, token=token, token_header=TOKEN_HEADER)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that port 0 is resolved before the URL is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class AnnotationServer:
    """The page, the frames and the save endpoint for the videos of one data directory."""

    def __init__(
        self,
        layout: DataLayout,
        video_ids: list[str],
        host: str = LOOPBACK,
        port: int = 0,
        *,
        allow_hosts: Iterable[str] = (),
        max_body: int = 1 << 20,
        body_timeout_s: float = 10.0,
    ):
        self.layout = layout
        self.csv_path = annotations_path(layout)
        self.videos = {video_id: scenes_of(layout, video_id) for video_id in video_ids}
        self.token = secrets.token_urlsafe(32)
        self.page = render_page(self.csv_path.name, self.token)
        self.save_lock = threading.Lock()
        self.socket = _bind(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        guard = GuardSettings(served_host_names(host, self.port, allow_hosts), self.token, max_body, body_timeout_s)
        config = uvicorn.Config(
            RequestGuard(self.app(), guard), http="h11", ws="none", lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def app(self) -> Starlette:
        routes = [
            Route("/", self.index, methods=["GET"]),
            Route("/api/videos", self.listing, methods=["GET"]),
            Route("/api/annotations", self.save, methods=["POST"]),
            Route("/frame/{video_id}/{index:int}.png", self.frame, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=SAFE_HEADERS)

    def current_file(self) -> AnnotationFile:
        try:
            return read_annotation_file(self.csv_path)
        except OSError as exc:
            return AnnotationFile(self.csv_path, exists=True, file_problems=[RowProblem(0, f"cannot be read: {exc}")])

    def listing(self, request: Request) -> Response:
        """Scenes, their editable rows, what else annotates them, and every unreadable row."""
        masks: dict[str, list[str]] = {}
        for video_id in self.videos:
            folder = annotation_masks_dir(self.layout, video_id)
            if folder.is_dir():
                masks[video_id] = sorted(p.name for p in folder.iterdir() if MASK_NAME.match(p.name))
        return JSONResponse(page_listing(self.current_file(), list(self.videos.values()), masks), headers=SAFE_HEADERS)

    async def save(self, request: Request) -> Response:
        """Apply the page's scene edits (the guard has read and bounded the body already)."""
        return await run_in_threadpool(self.apply_edits, await request.body())

    def apply_edits(self, body: bytes) -> Response:
        """Validate the posted edits, then write them (serialised; atomic) and answer the new versions."""
        try:
            edits = edits_from_page(self.videos, json.loads(body or b"{}"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return JSONResponse({"error": str(exc)}, status_code=400, headers=SAFE_HEADERS)
        try:
            with self.save_lock:
                path = apply_scene_edits(self.csv_path, edits)
                found = read_annotation_file(path)
        except StaleSceneError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409, headers=SAFE_HEADERS)
        except AnnotationFileError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409, headers=SAFE_HEADERS)
        versions: dict[str, dict[str, str]] = {e.video_id: {} for e in edits}
        for edit in edits:
            versions[edit.video_id][str(edit.scene)] = found.version(edit.video_id, edit.scene)
        rows = sum(len(e.rows) for e in edits)
        return JSONResponse({"rows": rows, "path": str(path), "versions": versions}, headers=SAFE_HEADERS)

    def frame(self, request: Request) -> Response:
        video = self.videos.get(request.path_params["video_id"])
        index = request.path_params["index"]
        if video is None or index >= video.scenes[-1][1]:
            return JSONResponse({"error": f"no such frame {request.url.path}"}, status_code=404)
        image = read_frame(video.path, index)
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return Response(encoded.tobytes(), media_type="image/png", headers=SAFE_HEADERS)

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`, Ctrl-C or SIGTERM (uvicorn's handlers in the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()
            self.stopped.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for :meth:`serve_forever` to return (if it was started)."""
        self.server.should_exit = True
        if self.server.started or self.server.config.loaded:
            self.stopped.wait(timeout)
        self.socket.close()


def main(argv: list[str] | None = None) -> int:
    from align_core.inputs.video_import import video_ids_in_inbox

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--videos", nargs="*", help="video ids (default: every video in raw/videos)")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME:PORT",
        help="another Host header to serve (only with --host other than loopback; default: the bound address)",
    )
    args = parser.parse_args(argv)
    layout = DataLayout(Path(args.data_dir))
    ids = args.videos or video_ids_in_inbox(layout)[0]
    if not ids:
        parser.error(f"no videos in {layout.videos_dir}")
    server = AnnotationServer(layout, ids, args.host, args.port, allow_hosts=args.allow_host)
    print(
        f"align-annotate: {len(ids)} videos; open {server.url} (Ctrl-C or kill {os.getpid()} to stop); "
        f"saves to {annotations_path(layout)}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
