"""Offline commands (render, validate, crds) and `run`, the operator itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from llmops.errors import UserError
from llmops.render.context import DEFAULT_STAGER_IMAGE
from llmops.validation import InvalidManifest, document_label, load_documents, validate_manifest


def read_manifests(path: str) -> list:
    """The YAML documents of a file ('-' = stdin); unreadable or empty files are user errors,
    bad YAML raises InvalidManifest."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    documents = load_documents(text, source=path)
    if not documents:
        raise UserError(f"{path}: no LLMDeployment found (the file is empty)")
    return documents


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        documents = read_manifests(args.file)
    except InvalidManifest as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    failed = False
    for index, doc in enumerate(documents):
        try:
            validate_manifest(doc)
            print(f"{document_label(doc, index)}: valid")
        except InvalidManifest as exc:
            failed = True
            for problem in exc.problems:
                print(f"{document_label(doc, index)}: {problem}", file=sys.stderr)
    return 1 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    from llmops.planner.sharding import resolve_sharding
    from llmops.render import ClusterCapabilities, render_children

    try:
        deployments = [validate_manifest(doc) for doc in read_manifests(args.file)]
    except InvalidManifest as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    caps = ClusterCapabilities(pdb_api_version=args.pdb_api_version, leader_worker_set=args.leader_worker_set)
    children = []
    for d in deployments:
        sharding, problems = resolve_sharding(d)
        if sharding is None:
            for problem in problems:
                print(f"{d.name}: {problem}", file=sys.stderr)
            return 1
        children += render_children(d, sharding, caps)
    yaml.safe_dump_all(children, sys.stdout, sort_keys=False)
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from llmops.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def cmd_rbac(args: argparse.Namespace) -> int:
    from llmops import rbac

    sys.stdout.write(rbac.helm_template() if args.helm else rbac.role_yaml(args.leader_worker_set, args.activator))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from llmops.operator_main import run_operator

    return run_operator(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check LLMDeployment manifests offline")
    p.add_argument("-f", "--file", required=True, help="manifest file ('-' for stdin)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="print the Kubernetes objects an LLMDeployment becomes")
    p.add_argument("-f", "--file", required=True, help="manifest file ('-' for stdin)")
    p.add_argument("--pdb-api-version", default="policy/v1", choices=["policy/v1", "policy/v1beta1"])
    p.add_argument("--leader-worker-set", action="store_true",
                   help="render multi-node replicas as LeaderWorkerSets (as on clusters with the LWS CRD)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("crds", help="print the LLMDeployment CustomResourceDefinition")
    p.set_defaults(func=cmd_crds)

    p = sub.add_parser("rbac", help="print the ClusterRole the operator needs (least privilege)")
    p.add_argument("--leader-worker-set", action="store_true", help="include LeaderWorkerSet access")
    p.add_argument("--activator", action="store_true",
                   help="include the endpoints access `llmops run --activator` needs")
    p.add_argument("--helm", action="store_true",
                   help="print the chart's rules template instead (charts/llmops/templates/_rbac_rules.tpl)")
    p.set_defaults(func=cmd_rbac)

    p = sub.add_parser("run", help="run the operator")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("-n", "--namespace", action="append", help="watch only these namespaces (repeatable)")
    p.add_argument("--metrics-port", type=int, default=8080, help="port for the operator's /metrics")
    p.add_argument("--health-port", type=int, default=8081, help="port for /healthz (0 disables)")
    p.add_argument("--prometheus-url", help="Prometheus base URL the autoscaler queries")
    p.add_argument("--stager-image", default=DEFAULT_STAGER_IMAGE,
                   help=f"image with `llmops stage` for model pre-staging pods (default {DEFAULT_STAGER_IMAGE})")
    p.add_argument("--activator", metavar="NAMESPACE/SERVICE",
                   help="the llmops activator's Service (chart: activator.enabled); deployments with "
                        "spec.activator.enabled route to it while no replica is Ready")
    p.add_argument("--webhook-port", type=int, default=0,
                   help="serve the validating admission webhook (HTTPS) on this port; 0 (default) = no webhook")
    p.add_argument("--webhook-cert-dir",
                   help="directory with the webhook's tls.crt and tls.key (required with --webhook-port)")
    p.add_argument("--webhook-addr", default="0.0.0.0", help="address the webhook server listens on")
    p.add_argument("--leader-elect", action="store_true",
                   help="run as one of several replicas: act only while holding a Lease (high availability)")
    p.add_argument("--leader-election-namespace", default=None,
                   help="namespace of the Lease (default: $POD_NAMESPACE, else default)")
    p.add_argument("--leader-election-id", default="llmops-operator", help="name of the Lease")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_run)
