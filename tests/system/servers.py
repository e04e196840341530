"""Start and stop server processes for the system tests: loopback only, free ports, by PID.

Every server runs in its own session (process group), so stopping it stops the children it
spawned too (dagster-webserver starts a gRPC code server, postgres starts its workers).
``dagster dev`` is avoided on purpose: started in the background without job control it ignores
SIGTERM, so the tests start ``dagster-webserver`` directly and stop it by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state = parts[1], parts[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address_hex)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@dataclass
class ServerProcess:
    """A started server: its PID, where it logs, and how to stop it."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0, first_signal: signal.Signals = signal.SIGTERM) -> int | None:
        """Signal the process group, then SIGKILL it if it has not exited after ``timeout`` s."""
        return stop_process_group(self.popen, timeout=timeout, first_signal=first_signal)


def start_server(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``argv`` in a new session with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns the descriptor after fork
    try:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
    finally:
        log.close()
    return ServerProcess(name=name, popen=popen, log_path=log_path)


def group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are still running (zombies do not count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces, so split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def stop_process_group(
    popen: subprocess.Popen, timeout: float = 15.0, first_signal: signal.Signals = signal.SIGTERM
) -> int | None:
    """Stop a process started with ``start_new_session=True`` and everything in its group.

    Sends ``first_signal`` to the group, waits up to ``timeout`` s for every member to exit,
    then SIGKILLs what is left. Returns the leader's exit code.
    """
    pgid = popen.pid  # a session leader's process group id is its PID
    for sig, wait in ((first_signal, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            popen.poll()  # reap the leader so it does not linger as a zombie
            if not group_members(pgid):
                break
            time.sleep(0.1)
        if not group_members(pgid):
            break
    try:
        popen.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass
    return popen.returncode


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
    what: str = "condition",
    on_fail: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it is true; raise with ``on_fail()``'s text on timeout or death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: process exited early\n{on_fail() if on_fail else ''}")
        time.sleep(interval)
    raise TimeoutError(f"{what}: not true after {timeout:.0f} s\n{on_fail() if on_fail else ''}")


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_ok(url: str) -> bool:
    try:
        return http_get(url, timeout=2.0)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def graphql(url: str, query: str, variables: Mapping[str, object] | None = None, timeout: float = 30.0) -> dict:
    """POST a GraphQL document; return ``data`` or raise with the server's errors."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"GraphQL HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(payload['errors'])[:4000]}")
    return payload["data"]
