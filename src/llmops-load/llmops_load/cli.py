"""`llmops load`: drive an OpenAI-compatible server (or a Kubernetes Service) and report
TTFT, inter-token latency, end-to-end latency percentiles, throughput and errors."""

from __future__ import annotations

import json
import logging
import sys

import yaml


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "load", help="generate load against an OpenAI-compatible endpoint and report latencies",
        description="Open loop (--rate, Poisson or constant arrivals), closed loop (--concurrency users) or a "
                    "phased --scenario YAML. Streams responses and measures TTFT, inter-token latency, "
                    "end-to-end latency percentiles, throughput and errors.")
    where = p.add_argument_group("target (one of)")
    where.add_argument("--url", help="base URL, e.g. http://127.0.0.1:8000")
    where.add_argument("--service", metavar="NAMESPACE/NAME",
                       help="Kubernetes Service; requests are balanced over its ready endpoints")
    where.add_argument("--kubeconfig", help="kubeconfig for --service (default: in-cluster, then ~/.kube/config)")
    where.add_argument("--port", help="endpoint port name or number for --service (default: the only one / 'http')")
    mode = p.add_argument_group("load shape")
    mode.add_argument("--rate", type=float, help="open loop: requests per second")
    mode.add_argument("--concurrency", type=int, help="closed loop: concurrent users")
    mode.add_argument("--arrival", choices=("poisson", "constant"), default="poisson",
                      help="open-loop arrival process (default poisson)")
    mode.add_argument("--scenario", metavar="FILE", help="YAML phases (rate / ramp / concurrency)")
    mode.add_argument("--duration", default="30s", help="run length, e.g. 30s, 2m (default 30s)")
    mode.add_argument("--max-requests", type=int, help="stop after this many requests")
    req = p.add_argument_group("requests")
    req.add_argument("--api", choices=("chat", "completions"), default="chat")
    req.add_argument("--model", help="model name (default: first from /v1/models)")
    req.add_argument("--prompt-tokens", type=int, default=128)
    req.add_argument("--max-tokens", type=int, default=64)
    req.add_argument("--no-stream", action="store_true", help="non-streaming requests (no TTFT)")
    req.add_argument("--no-ignore-eos", action="store_true",
                     help="let the model stop early (default sends ignore_eos for fixed output lengths)")
    req.add_argument("--timeout", default="60s", help="per-request timeout (default 60s)")
    req.add_argument("--shared-prefix-tokens", type=int, default=0, metavar="N",
                     help="prepend the same N-token system prompt to every request (prefix caching)")
    req.add_argument("--sessions", type=int, default=0, metavar="N",
                     help="multi-turn: cycle requests over N conversations (with --turns)")
    req.add_argument("--turns", type=int, default=1, metavar="K",
                     help="turns per conversation; each turn resends the history (default 1)")
    req.add_argument("--images", type=int, default=0, metavar="N",
                     help="chat: N generated PNG images per request, in front of the text (vision-language models)")
    req.add_argument("--image-sizes", metavar="WxH[:WEIGHT],...",
                     help="sizes the images are drawn from, e.g. 640x480,1280x720:2 (default "
                          "640x480,1280x720,1920x1080)")
    req.add_argument("--distinct-images", type=int, default=16, metavar="K",
                     help="different images per size; repeats hit the server's multimodal cache (default 16)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' for stdout)")
    out.add_argument("--json-results", action="store_true", help="include every request in the JSON")
    out.add_argument("--progress-interval", default="5s", help="progress line period on stderr; 0 = quiet")
    out.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


class _UserError(Exception):
    pass


def _run(args) -> int:
    """User errors print one line and exit 2, as llmops.errors.UserError does; llmops-load
    does not depend on the operator, so it keeps its own error class."""
    try:
        return _run_checked(args)
    except _UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_checked(args) -> int:
    from llmops_load import scenario as sc
    from llmops_load.generator import LoadConfig, run_load_sync
    from llmops_load.targets import TargetError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        scenario = None
        if args.scenario:
            try:
                with open(args.scenario, encoding="utf-8") as handle:
                    scenario = sc.parse_scenario(yaml.safe_load(handle))
            except OSError as exc:
                raise _UserError(f"--scenario {args.scenario}: {exc.strerror}; fix: give a readable YAML file")
            except yaml.YAMLError as exc:
                raise _UserError(f"--scenario {args.scenario}: not valid YAML ({exc.problem if hasattr(exc, 'problem') else exc})")
        for name in ("prompt_tokens", "max_tokens"):
            if getattr(args, name) < 1:
                raise _UserError(f"--{name.replace('_', '-')} must be >= 1")
        images = None
        if args.images or args.image_sizes:
            from llmops_load.images import ImageMixError, parse_image_mix

            try:
                images = parse_image_mix({"per_request": args.images or 1, "distinct": args.distinct_images,
                                          **({"sizes": args.image_sizes} if args.image_sizes else {})}, "--images")
            except ImageMixError as exc:
                raise _UserError(str(exc)) from None
        progress = args.progress_interval
        config = LoadConfig(
            url=args.url, service=args.service, kubeconfig=args.kubeconfig, port=args.port, api=args.api,
            model=args.model, prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens,
            stream=not args.no_stream, ignore_eos=not args.no_ignore_eos,
            duration=sc.parse_duration(args.duration, "--duration"), rate=args.rate,
            concurrency=args.concurrency, arrival=args.arrival, scenario=scenario,
            max_requests=args.max_requests, timeout=sc.parse_duration(args.timeout, "--timeout"), seed=args.seed,
            shared_prefix_tokens=args.shared_prefix_tokens, sessions=args.sessions, turns=args.turns, images=images,
            progress_interval=0.0 if str(progress).strip() in ("0", "0s") else sc.parse_duration(progress,
                                                                                                 "--progress-interval"),
        )
        report = run_load_sync(config)
    except (sc.ScenarioError, TargetError) as exc:
        raise _UserError(str(exc)) from None
    print(report.table())
    if args.json:
        text = json.dumps(report.to_dict(include_results=args.json_results), indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    return 0 if report.requests_ok else 1
