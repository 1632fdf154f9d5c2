"""Start the operator: metrics server, Kopf's health endpoint, the handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from llmops import controller
from llmops.errors import UserError


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one access line per probe and admission request drowns the real log
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    controller.KUBECONFIG = args.kubeconfig  # used by kube.py and by the Kopf login handler
    if args.prometheus_url:
        controller.PROMETHEUS_URL = args.prometheus_url
    controller.STAGER_IMAGE = args.stager_image
    if getattr(args, "activator", None):
        from llmops.activator.routing import ActivatorRef

        try:
            controller.enable_activator(str(ActivatorRef.parse(args.activator)))
        except ValueError as exc:
            raise UserError(str(exc)) from None
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
