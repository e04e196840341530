"""``align-annotate``: drag one box per scene in a browser page served on 127.0.0.1; it writes the CSV.

The page shows the first frame of every scene of every video in ``raw/videos`` (scenes as the
video catalog maps them: given in ``alignment_score.csv`` or detected), each on a canvas at the
video's own pixel grid. Drag a box around the product, or tick "no product" for a scene without
it, then press Save: the boxes go to ``raw/annotations.csv`` (one ``box`` or ``absent`` row per
scene; other videos' rows are kept). Boxes already in the file are shown and can be redrawn.

Only the standard library serves it (``http.server``), bound to 127.0.0.1 by default: the page
exposes video frames, so it is not meant for a network. The page itself is the Jinja2 template
``templates/annotate.html`` (autoescaped).
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
from jinja2 import Environment, PackageLoader

from align_core.inputs.annotations import AnnotationRow, annotations_path, read_annotations, write_annotations
from align_core.inputs.ids import validate_video_id
from align_core.io.layout import DataLayout
from align_core.io.video_io import read_frame
from align_core.settings import add_data_dir_argument

__all__ = [
    "AnnotationServer",
    "main",
]

LOOPBACK = "127.0.0.1"


@dataclass
class VideoScenes:
    video_id: str
    path: Path
    width: int
    height: int
    scenes: list[tuple[int, int]]  # frame ranges, scene n = scenes[n - 1]


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


def current_boxes(layout: DataLayout, video: VideoScenes) -> dict[int, dict[str, Any]]:
    """Scene-level rows already in the CSV: ``{scene: {x, y, w, h} or {absent: True}}``."""
    path = annotations_path(layout)
    if not path.exists():
        return {}
    out: dict[int, dict[str, Any]] = {}
    starts = {start: n for n, (start, _) in enumerate(video.scenes, start=1)}
    for row in read_annotations(path).rows_for(video.video_id):
        scene = row.scene if row.scene is not None else starts.get(row.frame)
        if scene is None or row.kind not in ("box", "absent"):
            continue
        out[scene] = {"absent": True} if row.kind == "absent" else {"x": row.x, "y": row.y, "w": row.w, "h": row.h}
    return out


def rows_from_page(video: VideoScenes, entries: list[dict[str, Any]]) -> list[AnnotationRow]:
    """Validate what the page posted for one video and turn it into CSV rows (one per scene)."""
    rows = []
    for entry in entries:
        scene = int(entry["scene"])
        if not 1 <= scene <= len(video.scenes):
            raise ValueError(f"video {video.video_id} has no scene {scene}")
        if entry.get("absent"):
            rows.append(AnnotationRow(0, video.video_id, "absent", scene))
            continue
        x, y, w, h = (float(entry[k]) for k in ("x", "y", "w", "h"))
        if w < 2 or h < 2 or x < 0 or y < 0 or x + w > video.width + 0.5 or y + h > video.height + 0.5:
            raise ValueError(
                f"video {video.video_id} scene {scene}: box {x, y, w, h} is not inside {video.width}x{video.height}"
            )
        rows.append(
            AnnotationRow(
                0,
                video.video_id,
                "box",
                scene,
                None,
                round(x),
                round(y),
                round(w),
                round(h),
                str(entry.get("label", "")).strip(),
            )
        )
    return rows


#: The page (HTML, CSS and its script) lives in ``templates/annotate.html`` beside this module.
TEMPLATES = Environment(
    loader=PackageLoader("align_core.cli", "templates"),
    autoescape=True,
    keep_trailing_newline=True,
)


def render_page(csv_name: str) -> str:
    """The annotation page; ``csv_name`` is the file the Save button writes to."""
    return TEMPLATES.get_template("annotate.html").render(csv_name=csv_name)


class AnnotationServer:
    """The page, the frames and the save endpoint for the videos of one data directory."""

    def __init__(self, layout: DataLayout, video_ids: list[str], host: str = LOOPBACK, port: int = 0):
        self.layout = layout
        self.videos = {video_id: scenes_of(layout, video_id) for video_id in video_ids}
        self.page = render_page(annotations_path(layout).name).encode()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "video_id": v.video_id,
                "width": v.width,
                "height": v.height,
                "scenes": [{"scene": n, "start": a, "stop": b} for n, (a, b) in enumerate(v.scenes, start=1)],
                "boxes": current_boxes(self.layout, v),
            }
            for v in self.videos.values()
        ]

    def save(self, payload: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        rows: list[AnnotationRow] = []
        for video_id, entries in payload.items():
            video = self.videos.get(validate_video_id(video_id))
            if video is None:
                raise ValueError(f"video {video_id!r} is not served here")
            rows.extend(rows_from_page(video, entries))
        with self.lock:
            path = write_annotations(annotations_path(self.layout), rows, replace_videos=list(payload))
        return {"rows": len(rows), "path": str(path)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL only
                return

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: Any) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = urlparse(self.path).path
                if path == "/":
                    return self._send(HTTPStatus.OK, server.page, "text/html; charset=utf-8")
                if path == "/api/videos":
                    return self._json(HTTPStatus.OK, server.listing())
                parts = path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "frame" and parts[2].endswith(".png"):
                    video = server.videos.get(unquote(parts[1]))
                    index = parts[2][:-4]
                    if video is not None and index.isdigit() and int(index) < video.scenes[-1][1]:
                        frame = read_frame(video.path, int(index))
                        ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                        return self._send(HTTPStatus.OK, encoded.tobytes(), "image/png")
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {path}"})

            def do_POST(self) -> None:  # noqa: N802
                if urlparse(self.path).path != "/api/annotations":
                    return self._json(HTTPStatus.NOT_FOUND, {"error": "POST only to /api/annotations"})
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(payload, dict):
                        raise ValueError("expected {video id: [{scene, x, y, w, h} or {scene, absent}]}")
                    self._json(HTTPStatus.OK, server.save(payload))
                except (ValueError, KeyError, TypeError) as exc:
                    self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        return Handler

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:

    from align_core.inputs.video_import import video_ids_in_inbox

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--videos", nargs="*", help="video ids (default: every video in raw/videos)")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args(argv)
    layout = DataLayout(Path(args.data_dir))
    ids = args.videos or video_ids_in_inbox(layout)[0]
    if not ids:
        parser.error(f"no videos in {layout.videos_dir}")
    server = AnnotationServer(layout, ids, args.host, args.port)
    print(
        f"align-annotate: {len(ids)} videos; open {server.url} (Ctrl-C to stop); saves to {annotations_path(layout)}",
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
