"""The `llmops` command. Each subcommand lives in the module that owns its job and
exposes `register(subparsers)`; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, attribute) pairs; each `register` adds one or more subcommands.
SUBCOMMAND_MODULES = [
    "llmops.commands",          # render, validate, crds, run
    "llmops.planner.cli",       # plan
    "llmops.sandbox.cli",       # sandbox up/down/status/kubeconfig/demo
    "llmops.sim.cli",           # sim serve/worker/stage
    "llmops.stage.cli",         # stage fetch/wait
    "llmops.load.cli",          # load
    "llmops.activator.cli",     # activator
]


class UserError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`llmops render ... | head`): stop quietly, like other CLIs.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    # Run via the imported module, so `llmops.cli.UserError` raised by subcommands is the
    # class caught above (under `python -m`, this file is also loaded as `__main__`).
    from llmops.cli import main as _main

    sys.exit(_main())
