"""Start the operator: metrics server, Kopf's health endpoint, the handlers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import logging
import os
import socket
import threading
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from llmops import controller  # registers the handlers
from llmops.config import OperatorConfig
from llmops.errors import UserError


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one access line per probe and admission request drowns the real log
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        # Kopf logs every handled watch event ("Handler ... succeeded"): thousands a second in a burst.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    activator = None
    if getattr(args, "activator", None):
        from llmops.activator.routing import ActivatorRef

        try:
            activator = str(ActivatorRef.parse(args.activator))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        controller.watch_routed_endpoints()
    config = OperatorConfig(kubeconfig=args.kubeconfig, prometheus_url=args.prometheus_url or None,
                            stager_image=args.stager_image, activator=activator)
    _enable_webhook(args)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    elector = _become_leader(args) if getattr(args, "leader_elect", False) else None
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    try:
        _run_kopf(args, config, liveness)
    finally:
        if elector is not None:
            elector.release()  # a clean stop hands over at once, not after the lease runs out
    return 0


def _become_leader(args: argparse.Namespace):
    """Block until this replica holds the Lease; afterwards renew it, and exit the process the
    moment it is lost (client-go's OnStoppedLeading), so two replicas never act together."""
    from llmops.kube import Kube, load_api_client
    from llmops.leader import LeaderElector

    namespace = args.leader_election_namespace or os.environ.get("POD_NAMESPACE") or "default"
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(Kube(load_api_client(args.kubeconfig)), namespace, args.leader_election_id, identity)
    with _standby_health(args.health_port):  # a standby is healthy: the liveness probe must not kill it
        elector.wait_until_leader()

    def lost() -> None:
        logging.getLogger(__name__).critical("lost the leader lease; exiting so that only one operator acts")
        os._exit(1)

    elector.keep_renewing(lost)
    return elector


@contextlib.contextmanager
def _standby_health(port: int):
    if not port:
        yield
        return

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"standby\n")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()  # Kopf binds the same port next


def _run_kopf(args: argparse.Namespace, config: OperatorConfig, liveness) -> None:
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=liveness,
            memo=kopf.Memo(config=config),  # every handler reads its settings from memo.config
        )
    )


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
