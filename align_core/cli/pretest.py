"""``align-pretest``: build a human attention pretest from an experiment, serve it, withdraw a session.

- ``align-pretest build EXPERIMENT [--study-id ID] [--config study.yaml]`` writes
  ``<data>/pretest/<study_id>/`` (:func:`align_core.pretest.study.build_study`);
- ``align-pretest serve STUDY [--host 127.0.0.1] [--port 8766] [--root-path /prefix] [--allow-host NAME]``
  serves it (:mod:`align_core.pretest.server`) on one uvicorn process until Ctrl-C or SIGTERM;
- ``align-pretest withdraw STUDY SESSION_ID`` deletes that session's file.

``STUDY`` is a study id under the data directory or a study folder. See docs/pretest.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from align_core.io.layout import DataLayout
from align_core.settings import add_data_dir_argument

__all__ = [
    "main",
]

LOOPBACK = "127.0.0.1"


def study_folder(data_dir: str, study: str) -> Path:
    """A study folder given as a path, or as an id under ``<data>/pretest/``."""
    from align_core.pretest.study import study_dir

    path = Path(study)
    if (path / "study.json").is_file():
        return path
    return study_dir(DataLayout(Path(data_dir)), study)


def build(args: argparse.Namespace) -> int:
    from align_core.pretest.design import list_balance
    from align_core.pretest.study import StudySettings, build_study

    settings = StudySettings.from_file(args.config) if args.config else StudySettings()
    built = build_study(DataLayout(Path(args.data_dir)), args.experiment, settings, args.study_id)
    study = built.study
    cells = list_balance(study["lists"])
    print(
        f"align-pretest: study {study['study_id']} at {built.path}: {len(study['videos'])} videos x "
        f"{len(study['variants'])} variants ({', '.join(study['variants'])}), {len(study['lists'])} lists, "
        f"each cell {min(cells.values())}x; design_sha256 {study['design_sha256']}"
    )
    if built.excluded_videos:
        print(f"  left out (not every study variant eligible): {', '.join(built.excluded_videos)}")
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from align_core.pretest.server import PretestApp, guarded_app

    folder = study_folder(args.data_dir, args.study)
    pretest = PretestApp(folder)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.create_server((args.host, args.port), family=family)
    port = listener.getsockname()[1]
    app = guarded_app(pretest, args.host, port, args.allow_host, args.max_body)
    config = uvicorn.Config(
        app,
        http="auto",  # httptools and uvloop when installed (both are, with uvicorn[standard])
        loop="auto",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,  # an access log would record participants' IP addresses
        root_path=args.root_path,
        proxy_headers=bool(args.allow_host),
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"align-pretest: serving study {pretest.study['study_id']} on http://{shown}:{port}/ "
        f"(pid {os.getpid()}; Ctrl-C or SIGTERM stops); sessions in {pretest.store.folder}",
        flush=True,
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
    return 0


def withdraw(args: argparse.Namespace) -> int:
    from align_core.pretest.store import SessionStore

    store = SessionStore(study_folder(args.data_dir, args.study) / "sessions")
    removed = store.withdraw(args.session_id)
    print(f"align-pretest: session {args.session_id} " + ("withdrawn: file deleted" if removed else "has no file"))
    return 0 if removed else 1


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="align-pretest", description=__doc__.splitlines()[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write a study from an experiment's eligible variants")
    build_parser.add_argument("experiment")
    build_parser.add_argument("--study-id", default=None, help="default: <experiment>-pretest")
    build_parser.add_argument("--config", default=None, help="study.yaml (consent text, window_deg, ...)")
    add_data_dir_argument(build_parser)
    build_parser.set_defaults(run=build)
    serve_parser = commands.add_parser("serve", help="serve a study's page and record endpoints")
    serve_parser.add_argument("study", help="study id under <data>/pretest, or a study folder")
    serve_parser.add_argument("--host", default=LOOPBACK, help="default 127.0.0.1; put a reverse proxy in front")
    serve_parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    serve_parser.add_argument("--root-path", default="", help="the proxy's path prefix, e.g. /pretest")
    serve_parser.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME", help="a public Host the proxy forwards"
    )
    serve_parser.add_argument("--forwarded-allow-ips", default="127.0.0.1", help="proxies trusted for X-Forwarded-*")
    serve_parser.add_argument("--max-body", type=int, default=1 << 20, help="largest accepted body in bytes")
    add_data_dir_argument(serve_parser)
    serve_parser.set_defaults(run=serve)
    withdraw_parser = commands.add_parser("withdraw", help="delete one session's responses")
    withdraw_parser.add_argument("study")
    withdraw_parser.add_argument("session_id")
    add_data_dir_argument(withdraw_parser)
    withdraw_parser.set_defaults(run=withdraw)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    from align_core.pretest.study import StudyError

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.run(args))
    except (StudyError, ValueError) as exc:
        print(f"align-pretest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
