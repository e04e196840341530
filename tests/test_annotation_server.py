"""``align-annotate``'s server against hostile requests, and Save keeping every row it does not edit.

The real server (Starlette on uvicorn) runs in a thread on a free 127.0.0.1 port, over a data
directory with a real H.264 ad; requests go over raw sockets so that malformed ones (negative
Content-Length, a 50 MB declaration, a body that never arrives) are sent exactly as written.
Every refused request must leave ``raw/annotations.csv`` byte-for-byte as it was.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_annotated_masks import make_ad

from align_core.cli.annotate import AnnotationServer
from align_core.inputs.annotation_file import read_annotation_file
from align_core.inputs.annotations import AnnotationRow, write_annotations
from align_core.io.layout import DataLayout

BODY_TIMEOUT_S = 1.0
#: Every row kind: scene boxes with labels (two on scene 1), a click on a frame, a frame-level box,
#: an absent scene, another video's rows, an unreadable row, a lab's extra column, CRLF endings.
CSV = (
    b"video id,scene,frame,kind,x,y,w,h,label,notes\r\n"
    b"ad1,1,,box,10,20,30,40,perfume bottle,checked by AB\r\n"
    b"ad1,1,,box,60,70,20,20,cap,\r\n"
    b"ad1,,5,positive,25,35,,,,\r\n"
    b"ad1,,5,negative,2,2,,,,\r\n"
    b"ad1,,20,box,5,5,40,50,frame-level,\r\n"
    b"ad1,3,,absent,,,,,,nothing here\r\n"
    b"other,1,,box,1,1,9,9,theirs,\r\n"
    b"other,2,,box,abc,1,9,9,,\r\n"
    b'ad1,2,,positive,50,60,,,"a ""quoted""\r\nlabel",\r\n'
)


@dataclass
class Running:
    server: AnnotationServer
    csv: Path
    token: str

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def ad_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ad") / "ad1.mp4"
    make_ad(path)
    return path


@pytest.fixture
def running(ad_video: Path, tmp_path: Path) -> Iterator[Running]:
    layout = DataLayout(tmp_path / "data").ensure()
    (layout.videos_dir / "ad1.mp4").write_bytes(ad_video.read_bytes())
    csv_path = layout.raw_dir / "annotations.csv"
    csv_path.write_bytes(CSV)
    server = AnnotationServer(layout, ["ad1"], port=0, body_timeout_s=BODY_TIMEOUT_S)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = request(server.port, "GET / HTTP/1.1", {}).body.decode()
        token = re.search(r'name="align-token" content="([^"]+)"', page)
        assert token is not None, page[:500]
        yield Running(server, csv_path, token.group(1))
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the server did not stop"


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> dict:
        return json.loads(self.body)


def _read_answer(sock: socket.socket, started: float) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), f"no HTTP answer: {data[:200]!r}"
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(head.split()[1]), body, time.monotonic() - started)


def request(
    port: int, start_line: str, headers: dict[str, str], body: bytes = b"", *, host: str | None = None
) -> Answer:
    """Send exactly these bytes (no header is added except Host) and read the answer within 10 s."""
    lines = [start_line, f"Host: {host or f'127.0.0.1:{port}'}", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return _read_answer(sock, started)


def post(running: Running, payload: object, **extra: str) -> Answer:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Content-Length": str(len(body))}
    return request(running.port, "POST /api/annotations HTTP/1.1", headers | extra, body)


def listing(running: Running) -> dict:
    answer = request(running.port, "GET /api/videos HTTP/1.1", {"X-Align-Token": running.token})
    assert answer.status == 200, answer.body
    return answer.json()


# -- hostile requests -------------------------------------------------------------------------------
def test_the_issue_s_cross_site_post_is_refused(running: Running) -> None:
    """The curl of issue 21 (Origin evil.example, text/plain, no token): it wiped a video's boxes."""
    body = b'{"ad1":[]}'
    headers = {"Origin": "http://evil.example", "Content-Type": "text/plain", "Content-Length": str(len(body))}
    answer = request(running.port, "POST /api/annotations HTTP/1.1", headers, body)
    assert answer.status == 403 and "evil.example" in answer.json()["error"]
    assert running.csv.read_bytes() == CSV


def test_a_foreign_origin_is_refused_even_with_the_token(running: Running) -> None:
    payload = {"ad1": [{"scene": 2, "absent": True}]}
    assert post(running, payload, Origin="http://evil.example").status == 403
    assert post(running, payload, **{"Sec-Fetch-Site": "cross-site"}).status == 403
    assert running.csv.read_bytes() == CSV
    assert post(running, payload, Origin=f"http://127.0.0.1:{running.port}").status == 200  # its own page


def test_dns_rebinding_host_gets_421_for_the_page_and_the_api(running: Running) -> None:
    rebound = f"attacker.example:{running.port}"
    page = request(running.port, "GET / HTTP/1.1", {}, host=rebound)
    assert page.status == 421 and b"align-token" not in page.body  # the token is not handed out
    body = b'{"ad1":[]}'
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Content-Length": str(len(body))}
    assert request(running.port, "POST /api/annotations HTTP/1.1", headers, body, host=rebound).status == 421
    assert request(running.port, "GET / HTTP/1.1", {}, host="127.0.0.1:1").status == 421  # another port
    assert request(running.port, "GET / HTTP/1.1", {}, host=f"localhost:{running.port}").status == 200
    assert running.csv.read_bytes() == CSV


def test_missing_or_wrong_token_is_refused(running: Running) -> None:
    body = b'{"ad1":[]}'
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    assert request(running.port, "POST /api/annotations HTTP/1.1", headers, body).status == 403
    wrong = headers | {"X-Align-Token": running.token[:-1] + "x"}
    assert request(running.port, "POST /api/annotations HTTP/1.1", wrong, body).status == 403
    assert request(running.port, "GET /api/videos HTTP/1.1", {}).status == 403
    assert running.csv.read_bytes() == CSV


def test_a_body_that_is_not_json_content_is_refused_415(running: Running) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert post(running, {"ad1": []}, **{"Content-Type": content_type}).status == 415
    assert running.csv.read_bytes() == CSV


def test_a_50_mb_body_is_refused_413_before_it_is_sent(running: Running) -> None:
    """The answer comes on the headers alone: the server never waits for (or reads) the 50 MB."""
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Content-Length": str(50 << 20)}
    answer = request(running.port, "POST /api/annotations HTTP/1.1", headers)
    assert answer.status == 413 and answer.seconds < 5
    assert running.csv.read_bytes() == CSV


@pytest.mark.parametrize(
    ("length", "status"),
    [("-1", 400), ("-99999999999999999999", 400), ("abc", 400), ("9" * 30, 400), (str(10**15), 413)],
)
def test_a_bad_content_length_gets_a_prompt_answer(running: Running, length: str, status: int) -> None:
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Content-Length": length}
    answer = request(running.port, "POST /api/annotations HTTP/1.1", headers, b'{"ad1":[]}')
    assert answer.status == status and answer.seconds < 5
    assert running.csv.read_bytes() == CSV


def test_a_slow_or_lying_body_gets_408(running: Running) -> None:
    """Content-Length says 100, ten bytes come, then nothing: 408 after the body timeout, not a hang."""
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Content-Length": "100"}
    answer = request(running.port, "POST /api/annotations HTTP/1.1", headers, b'{"ad1": [ ')
    assert answer.status == 408 and BODY_TIMEOUT_S <= answer.seconds < BODY_TIMEOUT_S + 4
    assert running.csv.read_bytes() == CSV


def test_a_chunked_body_over_the_limit_is_refused(running: Running) -> None:
    headers = {"Content-Type": "application/json", "X-Align-Token": running.token, "Transfer-Encoding": "chunked"}
    chunk = b" " * (600 << 10)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2))  # 1.2 MB, no end chunk yet
    answer = request(running.port, "POST /api/annotations HTTP/1.1", headers, body)
    assert answer.status == 413
    assert running.csv.read_bytes() == CSV


# -- Save edits only what the page shows ------------------------------------------------------------
def test_unreadable_rows_are_listed_not_an_empty_reply(running: Running) -> None:
    """Issue 21 item 9: one unreadable row made /api/videos answer nothing (the page said 'loading...')."""
    found = listing(running)
    assert [(p["line"], p["video_id"]) for p in found["problems"]] == [(9, "other")]
    assert "value 'abc': must be a number of pixels" in found["problems"][0]["reason"]
    scenes = found["videos"][0]["scenes"]
    assert [b["label"] for b in scenes[0]["boxes"]] == ["perfume bottle", "cap"]
    assert scenes[2]["absent"] is True
    assert any("positive on frame 5" in k for k in scenes[0]["kept"])
    assert any("frame-level" in k for k in scenes[1]["kept"]) and any(
        "positive on scene 2" in k for k in scenes[1]["kept"]
    )


def test_save_replaces_only_the_edited_scene_and_keeps_every_other_byte(running: Running) -> None:
    scenes = listing(running)["videos"][0]["scenes"]
    assert post(running, {}).status == 200 and running.csv.read_bytes() == CSV  # nothing edited, nothing changed
    entry = {"scene": 1, "x": 12, "y": 22, "w": 33, "h": 44, "label": "bottle", "version": scenes[0]["version"]}
    answer = post(running, {"ad1": [entry]})
    assert answer.status == 200 and answer.json()["rows"] == 1, answer.body
    expected = CSV.replace(
        b"ad1,1,,box,10,20,30,40,perfume bottle,checked by AB\r\nad1,1,,box,60,70,20,20,cap,\r\n",
        b"ad1,1,,box,12,22,33,44,bottle,checked by AB\r\n",  # the lab's own column is not the page's to drop
    )
    assert running.csv.read_bytes() == expected
    rows = read_annotation_file(running.csv)
    assert [str(p) for p in rows.row_problems()] == ["line 8, column 'x', value 'abc': must be a number of pixels"]


def test_a_scene_changed_in_the_file_since_the_page_read_it_is_refused(running: Running) -> None:
    version = listing(running)["videos"][0]["scenes"][2]["version"]
    changed = CSV.replace(b"ad1,3,,absent,,,,,,nothing here", b"ad1,3,,box,1,1,9,9,typed in an editor,")
    running.csv.write_bytes(changed)
    answer = post(running, {"ad1": [{"scene": 3, "version": version}]})
    assert answer.status == 409 and "scene 3 changed" in answer.json()["error"]
    assert running.csv.read_bytes() == changed


def test_invalid_edits_are_refused_whole(running: Running) -> None:
    good = {"scene": 2, "absent": True}
    for bad in ({"scene": 9, "absent": True}, {"scene": 1, "x": 100, "y": 0, "w": 80, "h": 10}, {"scene": "1"}):
        answer = post(running, {"ad1": [good, bad]})
        assert answer.status == 400, (bad, answer.body)
    assert post(running, {"nope": [good]}).status == 400
    headers = {"X-Align-Token": running.token, "Content-Type": "application/json", "Content-Length": "5"}
    assert request(running.port, "POST /api/annotations HTTP/1.1", headers, b"{oops").status == 400
    assert running.csv.read_bytes() == CSV


def test_write_annotations_keeps_other_videos_unreadable_rows(tmp_path: Path) -> None:
    """The whole-video writer (the demo's) kept only readable rows of other videos before."""
    path = tmp_path / "annotations.csv"
    path.write_bytes(CSV + b"late,1,,box,1,1,1,1,caf\xe9,\r\n")
    write_annotations(path, [AnnotationRow(0, "ad1", "absent", 2)])
    data = path.read_bytes()
    assert b"other,2,,box,abc,1,9,9,,\r\n" in data and b"caf\xe9" in data
    assert b"perfume bottle" not in data and data.endswith(b"ad1,2,,absent,,,,,,\r\n")
    kept = read_annotation_file(path)
    assert [r.row.label for r in kept.records if r.row is not None and r.video_id == "other"] == ["theirs"]
    assert [p.line for p in kept.row_problems()] == [3, 4]  # the unreadable rows, still there to be fixed
