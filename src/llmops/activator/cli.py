"""`llmops activator`: the activator process (the operator's image, another subcommand)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal


def cmd_activator(args: argparse.Namespace) -> int:
    from llmops.activator.registry import Registry
    from llmops.activator.server import serve
    from llmops.kube import Kube, load_api_client

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        registry = Registry(Kube(load_api_client(args.kubeconfig)), refresh_seconds=args.refresh_seconds)
        task = asyncio.ensure_future(serve(registry, args.host, args.port, args.metrics_port))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activator", help="hold requests while LLMDeployments wake from zero (chart: activator)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port Services send held traffic to (default 8000)")
    p.add_argument("--metrics-port", type=int, default=8080, help="port for /metrics and /healthz")
    p.add_argument("--refresh-seconds", type=float, default=2.0,
                   help="how often the list of LLMDeployments with spec.activator.enabled is re-read")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_activator)
