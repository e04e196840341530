"""The pretest server against bad and hostile input, a killed process, and the design's balance.

A tiny study is built once by the real ``align-pretest build`` (hand-made H.264 variants, a
registered experiment, hand-written eligibility records). Most tests talk to the app through
Starlette's TestClient behind the same guard the server uses; the oversized post and the kill
test run the real ``align-pretest serve`` (uvicorn) as a process on a free 127.0.0.1 port,
stopped by PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pretest_fixture import build_study_cli, make_pretest_data, serve_argv, session_files
from starlette.testclient import TestClient
from system.servers import free_port, port_open, start_server, wait_until

from align_core.pretest.design import latin_square_lists, list_balance
from align_core.pretest.server import PretestApp, guarded_app
from align_core.pretest.study import StudyError, load_study

REPO = Path(__file__).resolve().parents[1]
PORT = 18766  # the Host the TestClient sends; nothing listens on it


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_pretest_data(tmp_path_factory.mktemp("pretest"), failed=("v3", "placebo"))
    return build_study_cli(root)


@pytest.fixture()
def client(study: Path) -> TestClient:
    return TestClient(guarded_app(PretestApp(study), "127.0.0.1", PORT), base_url=f"http://127.0.0.1:{PORT}")


def new_id() -> str:
    return uuid.uuid4().hex


def start(client: TestClient, crowd: dict[str, str] | None = None, **headers: str) -> dict:
    body = {"batch_id": new_id(), "consent": True, "crowd": crowd or {}}
    reply = client.post("/api/sessions", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def cursor(session: dict, trial_index: int = 0, samples: list | None = None, **changes) -> dict:
    trial = session["plan"]["trials"][trial_index]
    record = {
        "kind": "cursor",
        "batch_id": new_id(),
        "trial_index": trial_index,
        "video_id": trial["video_id"],
        "variant": trial["variant"],
        "practice": False,
        "viewport": {"w": 1280, "h": 720},
        "video_rect": {"x": 10.0, "y": 20.0, "w": 300.0, "h": 500.0},
        "samples": samples if samples is not None else [[0.1 * i, 0.5, 0.5] for i in range(10)],
    }
    return {**record, **changes}


def post(client: TestClient, session: dict, record: dict | bytes, token: str | None = None, sid: str | None = None):
    headers = {"X-Pretest-Token": token or session["token"], "Content-Type": "application/json"}
    url = f"/api/sessions/{sid or session['session_id']}/records"
    body = record if isinstance(record, bytes) else json.dumps(record).encode()
    return client.post(url, content=body, headers=headers)


def lines(study: Path, session_id: str) -> list[dict]:
    return [json.loads(line) for line in (study / "sessions" / f"{session_id}.jsonl").read_text().splitlines()]


def test_latin_square_lists_balance_every_video_variant_cell() -> None:
    videos, variants = [f"v{i}" for i in range(7)], ["baseline", "early_boost", "late_boost", "placebo"]
    lists = latin_square_lists(videos, variants)
    assert len(lists) == len(variants)
    for trials in lists:  # each participant sees each video once, in one variant
        assert sorted(t["video_id"] for t in trials) == videos
    assert set(list_balance(lists).values()) == {1}
    assert len(list_balance(lists)) == len(videos) * len(variants)


def test_build_keeps_only_videos_eligible_in_every_arm_and_hashes_the_design(study: Path) -> None:
    document = load_study(study)
    assert [v["video_id"] for v in document["videos"]] == ["v1", "v2"]  # v3's placebo failed its check
    assert document["variants"] == ["baseline", "early_boost", "placebo"]
    assert set(list_balance(document["lists"]).values()) == {1}
    assert oct((study / "salt").stat().st_mode & 0o777) == "0o600"
    edited = dict(document, window_deg=9.0)
    copy = study.parent / "edited"
    copy.mkdir()
    (copy / "study.json").write_text(json.dumps(edited))
    with pytest.raises(StudyError, match="design_sha256"):
        load_study(copy)


def retained_lists(study: Path) -> Counter:
    """How many sessions each list has among the session files present."""
    return Counter(lines(study, path.stem)[0]["list_index"] for path in (study / "sessions").glob("*.jsonl"))


def test_sessions_are_assigned_lists_in_turn_so_cells_fill_evenly(client: TestClient, study: Path) -> None:
    before = retained_lists(study)
    sessions = [start(client) for _ in range(6)]
    indices = [lines(study, s["session_id"])[0]["list_index"] for s in sessions]
    if len(set(before.values())) <= 1 and len(before) in (0, 3):  # balanced before: two more sessions per list
        assert Counter(indices) == {0: 2, 1: 2, 2: 2}
    counts = retained_lists(study)
    assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 1, counts
    cells = Counter((t["video_id"], t["variant"]) for s in sessions for t in s["plan"]["trials"])
    assert set(cells.values()) == {2}
    for s in sessions:  # one variant per video per participant
        assert len({t["video_id"] for t in s["plan"]["trials"]}) == len(s["plan"]["trials"])


def test_crowd_ids_are_stored_salted_and_hashed_never_ip_or_user_agent(client: TestClient, study: Path) -> None:
    crowd = {"PROLIFIC_PID": "pid-5f2e-secret", "STUDY_ID": "study-77", "workerId": "A1WORKER"}
    session = start(client, crowd, **{"User-Agent": "UA-MARKER-Firefox/999"})
    assert post(client, session, cursor(session)).status_code == 200
    text = (study / "sessions" / f"{session['session_id']}.jsonl").read_text()
    for secret in ("pid-5f2e-secret", "study-77", "A1WORKER", "UA-MARKER", "Firefox", "testclient", "127.0.0.1"):
        assert secret not in text
    salt = (study / "salt").read_text().strip()
    stored = lines(study, session["session_id"])[0]["crowd"]
    assert stored == {k: hashlib.sha256((salt + v).encode()).hexdigest() for k, v in crowd.items()}


def test_replayed_batch_is_stored_once(client: TestClient, study: Path) -> None:
    session = start(client)
    record = cursor(session)
    first, second = post(client, session, record), post(client, session, record)
    assert first.json() == {"ok": True, "duplicate": False}
    assert second.status_code == 200 and second.json()["duplicate"] is True
    stored = [r for r in lines(study, session["session_id"]) if r["batch_id"] == record["batch_id"]]
    assert len(stored) == 1 and stored[0]["samples"] == record["samples"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"kind": "cursor", "batch_id": ', 400),  # malformed JSON
        (b"[1, 2, 3]", 400),  # JSON, not a record
        (b'{"kind": "cursor"}', 400),  # missing fields
        (b"", 400),
    ],
)
def test_malformed_posts_get_400_and_write_nothing(client: TestClient, study: Path, body: bytes, status: int) -> None:
    session = start(client)
    before = (study / "sessions" / f"{session['session_id']}.jsonl").read_bytes()
    reply = post(client, session, body)
    assert reply.status_code == status and "invalid record" in reply.json()["error"]
    assert (study / "sessions" / f"{session['session_id']}.jsonl").read_bytes() == before


def test_non_finite_implausible_and_foreign_records_are_refused(client: TestClient, study: Path) -> None:
    session = start(client)
    path = study / "sessions" / f"{session['session_id']}.jsonl"
    before = path.read_bytes()
    nan = json.dumps(cursor(session)).replace('"samples": [[0.0', '"samples": [[NaN').encode()
    assert post(client, session, nan).status_code == 400
    too_late = cursor(session, samples=[[60.0, 0.5, 0.5]])  # the clip lasts 2 s
    assert post(client, session, too_late).status_code == 422
    other = session["plan"]["trials"][1]
    wrong_trial = cursor(session, trial_index=0, video_id=other["video_id"], variant=other["variant"])
    assert post(client, session, wrong_trial).status_code == 422
    too_many = cursor(session, samples=[[0.001, 0.5, 0.5]] * 5000)
    assert post(client, session, too_many).status_code == 400
    assert post(client, session, cursor(session, extra_field=1)).status_code == 400
    assert post(client, session, cursor(session, pointer="eye")).status_code == 400  # mouse, touch or pen
    assert path.read_bytes() == before


def test_a_batch_for_another_session_is_refused_by_its_token(client: TestClient, study: Path) -> None:
    mine, theirs = start(client), start(client)
    before = (study / "sessions" / f"{theirs['session_id']}.jsonl").read_bytes()
    reply = post(client, mine, cursor(mine), token=mine["token"], sid=theirs["session_id"])
    assert reply.status_code == 403 and "token" in reply.json()["error"]
    assert post(client, mine, cursor(mine), token="0" * 64).status_code == 403
    assert (study / "sessions" / f"{theirs['session_id']}.jsonl").read_bytes() == before


@pytest.mark.parametrize("session_id", ["..", "..%2F..%2Fstudy.json", "ABCDEF" * 6, "0" * 31, "0" * 31 + "g"])
def test_path_like_session_ids_are_refused(client: TestClient, study: Path, session_id: str) -> None:
    session = start(client)
    reply = post(client, session, cursor(session), sid=session_id)
    assert reply.status_code in (400, 404)
    assert sorted(p.name for p in study.iterdir()) == ["media", "salt", "secret", "sessions", "study.json"]


@pytest.mark.parametrize(
    "changes", [{"batch_id": "../../etc/passwd"}, {"video_id": "../v1"}, {"variant": "a/b"}, {"batch_id": "A" * 32}]
)
def test_path_like_record_ids_are_refused(client: TestClient, study: Path, changes: dict) -> None:
    session = start(client)
    reply = post(client, session, cursor(session, **changes))
    assert reply.status_code == 400
    assert len(lines(study, session["session_id"])) == 1


def test_guard_refuses_other_hosts_cross_site_and_non_json(client: TestClient, study: Path) -> None:
    session = start(client)
    url = f"/api/sessions/{session['session_id']}/records"
    body = json.dumps(cursor(session))
    headers = {"X-Pretest-Token": session["token"], "Content-Type": "application/json"}
    assert client.post(url, content=body, headers={**headers, "Host": "evil.example"}).status_code == 421
    assert client.post(url, content=body, headers={**headers, "Origin": "http://evil.example"}).status_code == 403
    assert client.post(url, content=body, headers={**headers, "Content-Type": "text/plain"}).status_code == 415
    assert len(lines(study, session["session_id"])) == 1


def test_withdraw_deletes_the_session_file_and_later_posts_get_404(client: TestClient, study: Path) -> None:
    session = start(client)
    path = study / "sessions" / f"{session['session_id']}.jsonl"
    assert post(client, session, cursor(session)).status_code == 200
    url = f"/api/sessions/{session['session_id']}/withdraw"
    reply = client.post(url, json={}, headers={"X-Pretest-Token": session["token"]})
    assert reply.json() == {"ok": True, "withdrawn": True} and not path.exists()
    assert post(client, session, cursor(session)).status_code == 404
    assert not path.exists()  # a late batch never recreates a withdrawn session


def test_a_withdrawn_sessions_list_goes_to_the_next_participant(client: TestClient, study: Path) -> None:
    """Lists go to the least-filled one, so a withdrawal (by the server or the command line, which the
    server does not see) leaves no cell short among the sessions analysed."""
    for _ in range(3):  # least-filled first: at most two starts bring the lists level
        counts = retained_lists(study)
        if len(counts) == 3 and len(set(counts.values())) == 1:
            break
        start(client)
    level = retained_lists(study)
    assert len(set(level.values())) == 1
    leaving = start(client)
    freed = lines(study, leaving["session_id"])[0]["list_index"]
    argv = [sys.executable, "-m", "align_core.cli.pretest", "withdraw", str(study), leaving["session_id"]]
    assert subprocess.run(argv, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 0
    joining = start(client)
    assert lines(study, joining["session_id"])[0]["list_index"] == freed
    assert retained_lists(study) == level + Counter({freed: 1})


def test_a_start_retried_after_a_restart_gets_its_session_back(study: Path) -> None:
    body = {"batch_id": new_id(), "consent": True, "crowd": {}}
    first = TestClient(guarded_app(PretestApp(study), "127.0.0.1", PORT), base_url=f"http://127.0.0.1:{PORT}")
    reply = first.post("/api/sessions", json=body).json()
    files = session_files(study)
    restarted = TestClient(guarded_app(PretestApp(study), "127.0.0.1", PORT), base_url=f"http://127.0.0.1:{PORT}")
    again = restarted.post("/api/sessions", json=body).json()
    assert again == reply and session_files(study) == files
    assert post(restarted, again, cursor(again)).status_code == 200
    restarted.post(
        f"/api/sessions/{again['session_id']}/withdraw", json={}, headers={"X-Pretest-Token": again["token"]}
    )
    assert restarted.post("/api/sessions", json=body).json()["session_id"] != reply["session_id"]


def test_withdraw_command_deletes_the_session_file(client: TestClient, study: Path) -> None:
    session = start(client)
    path = study / "sessions" / f"{session['session_id']}.jsonl"
    argv = [sys.executable, "-m", "align_core.cli.pretest", "withdraw", str(study), session["session_id"]]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "withdrawn" in proc.stdout and not path.exists()
    assert subprocess.run(argv, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode == 1


def test_completion_code_is_answered_and_recorded(client: TestClient, study: Path) -> None:
    session = start(client)
    reply = post(client, session, {"kind": "complete", "batch_id": new_id()})
    code = load_study(study)["completion_code"]
    assert reply.json()["completion_code"] == code
    assert lines(study, session["session_id"])[-1] == {
        **lines(study, session["session_id"])[-1],
        "completion_code": code,
    }


def test_realism_answers_are_scored_by_the_server(client: TestClient, study: Path) -> None:
    session = start(client)
    pair = session["plan"]["realism"][0]
    edited_side = "left" if pair["left"] == pair["variant"] else "right"
    record = {"kind": "realism", "batch_id": new_id(), "realism_index": 0, "video_id": pair["video_id"]}
    record |= {"variant": pair["variant"], "mode": "2afc", "choice": edited_side, "rating": None}
    assert post(client, session, record).status_code == 200
    stored = lines(study, session["session_id"])[-1]
    assert stored["correct"] is True and stored["left"] == pair["left"]


# -- the real server process ------------------------------------------------------------------


def serve(study: Path, port: int, tmp_path: Path, name: str):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = start_server(name, serve_argv(study, port), tmp_path / f"{name}.log", env=env)
    wait_until(lambda: port_open("127.0.0.1", port), 60, alive=server.alive, what=name, on_fail=server.log_tail)
    return server


def raw_request(port: int, head: str, body: bytes = b"", read_timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head.encode() + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_50_mb_post_is_refused_by_its_size_without_being_read(study: Path, tmp_path: Path) -> None:
    port = free_port()
    server = serve(study, port, tmp_path, "pretest-50mb")
    try:
        session = httpx.post(
            f"http://127.0.0.1:{port}/api/sessions", json={"batch_id": new_id(), "consent": True}
        ).json()
        path = study / "sessions" / f"{session['session_id']}.jsonl"
        before = path.read_bytes()
        head = (
            f"POST /api/sessions/{session['session_id']}/records HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nX-Pretest-Token: {session['token']}\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
        )
        started = time.monotonic()
        answer = raw_request(port, head, b"{" * 1024)  # 1 KiB of the announced 50 MiB is all we send
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert time.monotonic() - started < 5
        streamed = head.replace(f"Content-Length: {50 * 1024 * 1024}", "Transfer-Encoding: chunked")
        chunk = b"x" * (256 * 1024)
        body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"  # 2 MiB
        assert raw_request(port, streamed, body).startswith(b"HTTP/1.1 413")
        assert path.read_bytes() == before
        assert server.alive()
        assert "413" in server.log_tail()  # the refusal is logged with its reason
    finally:
        server.stop()


def test_a_killed_server_loses_no_acknowledged_batch_and_a_retry_is_stored_once(study: Path, tmp_path: Path) -> None:
    """Eight clients post at once; the server is SIGKILLed with posts in flight, then restarted;
    every batch without an answer is retried (some twice). Acknowledged batches are all there,
    and none is stored twice, even one written just before the kill but never answered."""
    port = free_port()
    server = serve(study, port, tmp_path, "pretest-kill-1")
    base = f"http://127.0.0.1:{port}"
    session = httpx.post(f"{base}/api/sessions", json={"batch_id": new_id(), "consent": True}).json()
    url = f"{base}/api/sessions/{session['session_id']}/records"
    headers = {"X-Pretest-Token": session["token"]}
    records = [cursor(session, samples=[[0.01 * i, 0.5, 0.4]] * 30) for i in range(120)]
    acknowledged: list[str] = []

    def send(record: dict) -> bool:
        if len(acknowledged) >= 40 and server.alive():
            try:
                os.kill(server.pid, signal.SIGKILL)  # posts of the other threads are in flight
            except ProcessLookupError:  # another thread killed it first, and it has been reaped
                pass
        try:
            reply = httpx.post(url, json=record, headers=headers, timeout=5)
        except httpx.TransportError:
            return False
        assert reply.status_code == 200, reply.text
        acknowledged.append(record["batch_id"])
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(send, records))
        server.popen.wait(10)
        unanswered = [r for r, ok in zip(records, answered, strict=True) if not ok]
        assert len(acknowledged) >= 40 and unanswered
        path = study / "sessions" / f"{session['session_id']}.jsonl"
        with open(path, "ab") as handle:  # what a kill in the middle of a write leaves: a torn line
            handle.write(b'{"kind":"cursor","batch_id":"' + unanswered[0]["batch_id"].encode())
        server = serve(study, port, tmp_path, "pretest-kill-2")
        with httpx.Client(timeout=5) as http:
            for record in [*unanswered, unanswered[0], records[0]]:  # the client retries, some twice
                assert http.post(url, json=record, headers=headers).status_code == 200
    finally:
        server.stop()
    stored = Counter(r["batch_id"] for r in lines(study, session["session_id"]) if r["kind"] == "cursor")
    assert set(acknowledged) <= set(stored)
    assert set(stored) == {r["batch_id"] for r in records} and set(stored.values()) == {1}


def test_session_files_hold_no_absolute_paths(study: Path) -> None:
    for path in session_files(study):
        assert str(study) not in path.read_text()


def test_behind_a_proxy_the_public_host_and_prefix_are_served_and_others_refused(study: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [*serve_argv(study, port), "--allow-host", "pretest.example.org", "--root-path", "/pretest"]
    server = start_server("pretest-proxied", argv, tmp_path / "proxied.log", env=env)
    wait_until(lambda: port_open("127.0.0.1", port), 60, alive=server.alive, what="proxied", on_fail=server.log_tail)
    public = {"Host": "pretest.example.org", "Origin": "https://pretest.example.org", "X-Forwarded-Proto": "https"}
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/", headers=public).status_code == 200
        body = {"batch_id": new_id(), "consent": True}
        assert httpx.post(f"{base}/api/sessions", json=body, headers=public).status_code == 200
        assert httpx.get(f"{base}/", headers={"Host": "evil.example"}).status_code == 421
        foreign = {**public, "Origin": "https://evil.example"}
        assert httpx.post(f"{base}/api/sessions", json=body, headers=foreign).status_code == 403
    finally:
        server.stop()


def test_build_reads_the_study_config_and_names_a_bad_one(study: Path, tmp_path: Path) -> None:
    root = study.parents[1]
    config = tmp_path / "study.yaml"
    config.write_text(
        "window_deg: 3.0\nrealism_mode: rating\nvariants: [baseline, early_boost]\ncompletion_code: C0DE42\n"
    )
    folder = build_study_cli(root, "--study-id", "configured", "--config", str(config))
    document = load_study(folder)
    assert document["variants"] == ["baseline", "early_boost"] and document["window_deg"] == 3.0
    assert document["realism"]["mode"] == "rating" and document["completion_code"] == "C0DE42"
    assert [v["video_id"] for v in document["videos"]] == ["v1", "v2", "v3"]  # v3's failed placebo is not asked for
    config.write_text("window_size: 3\n")
    argv = [sys.executable, "-m", "align_core.cli.pretest", "build", "pretest-demo", "--data-dir", str(root)]
    proc = subprocess.run(
        [*argv, "--config", str(config)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 2 and str(config) in proc.stderr and "window_size" in proc.stderr


def test_a_study_with_sessions_is_never_rebuilt(study: Path, client: TestClient) -> None:
    start(client)
    argv = [
        sys.executable,
        "-m",
        "align_core.cli.pretest",
        "build",
        "pretest-demo",
        "--data-dir",
        str(study.parents[1]),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "already has sessions" in proc.stderr
    load_study(study)  # untouched
