"""`llmops stage fetch|wait`: the commands the model-stage DaemonSet and serving pods run."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from llmops.stage.fetchers import Fetcher, FetchError, HubFetcher
from llmops.stage.layout import DEFAULT_REVISION
from llmops.stage.leases import remove_unused, renew
from llmops.stage.stager import StageError, StageRequest, stage, still_staged, wait_for_stage

RECHECK_SECONDS = 10.0  # a stat per file: cheap


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="hf://ORG/NAME")
    parser.add_argument("--revision", default=DEFAULT_REVISION, help="branch, tag or commit (default main)")
    parser.add_argument("--root", required=True, help="node directory holding staged models")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                        help="repo files not to download (repeatable)")
    parser.add_argument("--hold", action="store_true",
                        help="after staging, keep running and re-stage if the copy disappears or is damaged")
    parser.add_argument("--recheck-seconds", type=float, default=RECHECK_SECONDS)
    parser.add_argument("--owner", help="NAMESPACE/NAME of the deployment: keeps a lease on this copy")
    parser.add_argument("--retain-unused-hours", type=float,
                        help="remove other copies on the node unused for this long (default: never)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("stage", help="pre-stage model weights on a node (run by llmops pods)")
    sub = parser.add_subparsers(dest="stage_command", metavar="SUBCOMMAND")
    sub.required = True
    fetch = sub.add_parser("fetch", help="download and check a model into the node cache")
    add_fetch_arguments(fetch)
    fetch.set_defaults(func=lambda args: run_fetch(args, _hub_fetcher))
    wait = sub.add_parser("wait", help="wait until a staged model is complete, then verify its SHA-256 sums")
    wait.add_argument("--dir", required=True, help="the staged model's directory")
    wait.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the marker")
    wait.add_argument("--no-verify", action="store_true", help="skip re-hashing the files")
    wait.set_defaults(func=_wait)


def _hub_fetcher() -> Fetcher:
    return HubFetcher(token=os.environ.get("HF_TOKEN") or None, endpoint=os.environ.get("HF_ENDPOINT") or None)


def _fail(message: str) -> int:
    # One line, exit 1: the container restarts with the kubelet's back-off and the
    # message is in `kubectl logs` and the pod's last state.
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def run_fetch(args: argparse.Namespace, make_fetcher) -> int:
    if not args.source.startswith("hf://") or args.source.count("/") < 3:
        return _fail(f"--source {args.source!r}: use hf://ORG/NAME")
    retain = None if args.retain_unused_hours is None else args.retain_unused_hours * 3600
    request = StageRequest(repo=args.source[len("hf://"):], revision=args.revision, root=Path(args.root),
                           ignore_patterns=tuple(args.ignore), owner=args.owner, retain_unused_seconds=retain)
    try:
        fetcher = make_fetcher()
        stage(request, fetcher, _log)
        while args.hold:
            time.sleep(args.recheck_seconds)
            if request.owner:
                renew(request.directory, request.owner)
            if retain is not None:
                remove_unused(request.root, retain, _log)
            if not still_staged(request):
                _log(f"{request.directory} is gone or incomplete; staging again")
                stage(request, fetcher, _log)
    except (StageError, FetchError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.root}: {exc.strerror or exc}; check the prestage hostPath on this node")
    return 0


def _wait(args: argparse.Namespace) -> int:
    try:
        wait_for_stage(Path(args.dir), args.timeout, verify=not args.no_verify, log=_log,
                       node=os.environ.get("NODE_NAME", ""))
    except StageError as exc:
        return _fail(str(exc))
    return 0
