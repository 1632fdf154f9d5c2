"""Start the operator: metrics server, Kopf's health endpoint, the handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from llmops import controller  # noqa: F401 - registers the handlers
from llmops.config import OperatorConfig
from llmops.cli import UserError


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one access line per probe and admission request drowns the real log
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        # Kopf logs every handled watch event ("Handler ... succeeded"): thousands a second in a burst.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    config = OperatorConfig(kubeconfig=args.kubeconfig, prometheus_url=args.prometheus_url or None,
                            stager_image=args.stager_image)
    _enable_webhook(args)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=liveness,
            memo=kopf.Memo(config=config),  # every handler reads its settings from memo.config
        )
    )
    return 0


def _enable_webhook(args: argparse.Namespace) -> None:
    """Start the admission webhook only when asked: without it the operator runs as before."""
    port = getattr(args, "webhook_port", 0) or 0
    cert_dir = getattr(args, "webhook_cert_dir", None)
    if not port:
        if cert_dir:
            raise UserError("--webhook-cert-dir given without --webhook-port; fix: add --webhook-port 9443")
        return
    if not cert_dir:
        raise UserError("--webhook-port needs --webhook-cert-dir (a directory with tls.crt and tls.key)")
    from llmops import webhook

    options = webhook.WebhookOptions(port=port, cert_dir=Path(cert_dir), addr=args.webhook_addr)
    missing = webhook.check_cert_dir(options)
    if missing:
        raise UserError("; ".join(missing))
    webhook.enable(options)
