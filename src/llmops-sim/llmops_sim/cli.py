"""`llmops sim serve ...`: run the vLLM simulator with `vllm serve`'s command line."""

from __future__ import annotations

import argparse
import os
import sys

from llmops_sim import config as sim_config

USAGE = """usage: llmops sim serve [MODEL] [--model M] [--served-model-name NAME ...] [--host H] [--port P]
                        [--tensor-parallel-size N] [--pipeline-parallel-size N] [--quantization Q]
                        [--max-model-len N] [--max-num-seqs N] [--max-num-batched-tokens N]
                        [--gpu-memory-utilization F] [--dtype D] [--kv-cache-dtype D]
                        [--distributed-executor-backend ray|mp|uni|external_launcher] [--data-parallel-size N]
                        [--[no-]enable-prefix-caching] [--[no-]enable-chunked-prefill] [other vllm flags]

Behaves like `vllm serve` from the outside. Other vLLM flags are accepted and ignored (logged).
Simulator knobs come from the environment so the same pod spec runs real vLLM:
""" + "\n".join(f"  {name:<28} {doc}" for name, doc in sim_config.ENV_DOC.items())


def register(subparsers) -> None:
    sim = subparsers.add_parser("sim", help="vLLM simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sim_sub.required = True
    # prefix_chars="+" so argparse hands every vLLM flag through untouched.
    serve = sim_sub.add_parser("serve", help="serve a simulated vLLM OpenAI-compatible API",
                               prefix_chars="+", add_help=False)
    serve.add_argument("vllm_args", nargs=argparse.REMAINDER)
    serve.set_defaults(func=_serve)
    worker = sim_sub.add_parser("worker", help="stand in for a Ray worker node of a multi-node vLLM group "
                                "(joins $LLMOPS_LEADER_ADDRESS, simulated; runs until SIGTERM)",
                                prefix_chars="+", add_help=False)
    worker.add_argument("ray_args", nargs=argparse.REMAINDER)  # tolerated, like `ray start`'s flags
    worker.set_defaults(func=_worker)
    from llmops.stage.cli import add_fetch_arguments
    from llmops.stage.fetchers import SIM_ENV_DOC

    stage = sim_sub.add_parser(
        "stage", help="`llmops stage fetch` against a simulated hub (no network): "
        + "; ".join(f"{k}: {v}" for k, v in SIM_ENV_DOC.items()))
    add_fetch_arguments(stage)
    stage.set_defaults(func=_stage)


def _user_error(message: str) -> int:
    """One line and exit 2, as llmops.errors.UserError gets from the CLI."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _serve(args) -> int:
    from llmops_sim import server

    if any(a in ("-h", "--help") for a in args.vllm_args):
        print(USAGE)
        return 0
    profile_text = None
    profile_path = os.environ.get("LLMOPS_SIM_PROFILE", "").strip()
    if profile_path:
        try:
            with open(profile_path, encoding="utf-8") as handle:
                profile_text = handle.read()
        except OSError as exc:
            return _user_error(f"LLMOPS_SIM_PROFILE: cannot read {profile_path}: {exc.strerror}; "
                               "fix: point it at a YAML file")
    try:
        config = sim_config.build_config(args.vllm_args, os.environ, profile_text)
    except sim_config.ConfigError as exc:
        if exc.argparse_line or exc.exit_code != 2:
            print(str(exc), file=sys.stderr)  # vLLM's own line, with vLLM's exit code
            return exc.exit_code
        return _user_error(str(exc))
    sys.stdout.reconfigure(line_buffering=True)
    return server.run(config)


def _stage(args) -> int:
    from llmops.stage.cli import run_fetch
    from llmops.stage.fetchers import SimulatedFetcher, SimulatedHub

    return run_fetch(args, lambda: SimulatedFetcher(SimulatedHub.from_env(os.environ)))


def _worker(args) -> int:
    from llmops_sim import worker

    if args.ray_args[:1] in (["-h"], ["--help"]):
        print(worker.__doc__)
        return 0
    return worker.run(args.ray_args, os.environ)
