"""The `llmops` command. Each subcommand lives in the module that owns its job and
exposes `register(subparsers)`; this file only wires them together."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from llmops import commands
from llmops.activator import cli as activator_cli
from llmops.errors import UserError
from llmops.planner import cli as planner_cli
from llmops.stage import cli as stage_cli

# The product's own verbs: render, validate, crds, rbac, run; plan; stage fetch/wait; activator.
PRODUCT_COMMANDS = [commands.register, planner_cli.register, stage_cli.register, activator_cli.register]

# Development verbs come from distributions of their own, found by this entry-point group
# (each names a `register(subparsers)`), so the operator image carries none of them.
PLUGIN_GROUP = "llmops.commands"
PLUGIN_HOMES = {"sandbox": "llmops-sandbox", "sim": "llmops-sim", "load": "llmops-load"}

__all__ = ["UserError", "build_parser", "main"]


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """All verbs; given the verb about to run, only that plugin is imported (so `llmops run`
    or a simulator pod's `llmops sim serve` loads nothing of the other distributions)."""
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in PRODUCT_COMMANDS:
        register(sub)
    plugins = sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)
    if verb in sub.choices or any(ep.name == verb for ep in plugins):
        plugins = [ep for ep in plugins if ep.name == verb]
    for ep in plugins:
        try:
            register = ep.load()
        except ImportError as exc:   # a half-installed plugin must not break the product's verbs
            print(f"warning: `llmops {ep.name}` is unavailable ({ep.value}: {exc})", file=sys.stderr)
            continue
        register(sub)
    return parser


def _missing_plugin(verb: str | None, parser: argparse.ArgumentParser) -> str | None:
    """A one-line fix when the verb's distribution is not installed."""
    choices = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if verb in PLUGIN_HOMES and verb not in choices:
        home = PLUGIN_HOMES[verb]
        return (f"`llmops {verb}` comes with the {home} distribution, which is not installed; "
                f"fix: pip install -e src/{home} (bash .ci/setup installs everything)")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = argv[0] if argv and not argv[0].startswith("-") else None
    parser = build_parser(verb)
    missing = _missing_plugin(verb, parser)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
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
    # UserError lives in llmops.errors, so it is the same class under `python -m llmops.cli`.
    sys.exit(main())
