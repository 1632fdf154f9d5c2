"""`llmops sandbox up|down|status|kubeconfig|prometheus`: a local Kubernetes whose GPU nodes are
real kubelets (with containerd and kube-proxy) in their own namespaces, with fake GPUs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import lifecycle
from .state import StateDir, resolve_dir


def _user_error(message: str) -> Exception:
    from llmops.errors import UserError
    return UserError(message)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    opts = lifecycle.UpOptions(
        dir=resolve_dir(args.dir), bin_dir=args.bin_dir, nodes_file=args.nodes,
        bridge=args.bridge, pod_cidr=args.pod_cidr, prometheus=not args.no_prometheus, pin=True,
    )
    import ipaddress
    import re
    if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]{0,11}", args.bridge):
        raise _user_error(f"--bridge {args.bridge!r}: must be 1-12 letters/digits/_ (it prefixes namespace names)")
    try:
        if ipaddress.ip_network(args.pod_cidr).prefixlen > 24:
            raise ValueError("too small")
    except ValueError as exc:
        raise _user_error(f"--pod-cidr {args.pod_cidr!r}: {exc}; fix: give a private range such as 10.244.0.0/16")
    if args.nodes and not Path(args.nodes).is_file():
        raise _user_error(f"--nodes {args.nodes}: no such file; fix: pass an existing YAML file")
    try:
        info, started = lifecycle.up(opts, progress=_progress)
    except lifecycle.SandboxError as exc:
        hint = (f"\n(logs in {opts.dir}/logs; `llmops sandbox down --dir {opts.dir}` cleans up)"
                if (opts.dir / "logs").exists() else "")
        raise _user_error(f"{exc}{hint}")
    print(f"export KUBECONFIG={info.kubeconfig}")
    if info.prometheus_url:
        print(f"# prometheus: {info.prometheus_url}")
    return 0


def cmd_binaries(args: argparse.Namespace) -> int:
    from .binaries import MissingBinary, locate, locate_node_binaries

    try:
        paths = locate(args.bin_dir, progress=_progress)
        paths.update(locate_node_binaries(args.bin_dir, progress=_progress))
    except MissingBinary as exc:
        raise _user_error(str(exc))
    for name, path in sorted(paths.items()):
        print(f"{name}: {path}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    lifecycle.down(resolve_dir(args.dir), progress=_progress)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    st = lifecycle.status(resolve_dir(args.dir))
    if args.json:
        print(json.dumps({
            "dir": st.dir, "up": st.up, "daemons": st.daemons, "apiserverReady": st.apiserver_ready,
            "nodesReady": st.nodes_ready, "nodesTotal": st.nodes_total,
            "kubeconfig": st.info.kubeconfig if st.info else None,
            "apiserverURL": st.info.apiserver_url if st.info else None,
            "prometheusURL": st.info.prometheus_url if st.info else None,
            "prometheusPodURL": st.info.prometheus_pod_url if st.info else None,
            "prometheusReady": st.prometheus_ready,
        }, indent=2))
        return 0 if st.up else 1
    if not st.up:
        print(f"sandbox: down (no sandbox running in {st.dir})")
        return 1
    info = st.info
    print(f"sandbox: up ({st.dir})")
    print(f"  apiserver:  {info.apiserver_url} ({'ready' if st.apiserver_ready else 'NOT ready'}); "
          f"from pods {info.gateway_ip}:{info.apiserver_port}")
    print(f"  kubeconfig: {info.kubeconfig}")
    print(f"  nodes:      {st.nodes_ready}/{st.nodes_total} Ready")
    prom = (f"{info.prometheus_url} ({'ready' if st.prometheus_ready else 'NOT running'}); "
            f"from pods {info.prometheus_pod_url}" if info.prometheus_url else "not started")
    print(f"  prometheus: {prom}")
    for name, pid in st.daemons.items():
        print(f"  {name:24s} {'pid ' + str(pid) if pid else 'not running'}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    state = StateDir(resolve_dir(args.dir))
    info = state.read_info()
    if info is None:
        raise _user_error(f"no sandbox in {state.root}; fix: run `llmops sandbox up` first")
    if args.print:
        sys.stdout.write(Path(info.kubeconfig).read_text())
    else:
        print(info.kubeconfig)
    return 0


def cmd_prometheus(args: argparse.Namespace) -> int:
    state = StateDir(resolve_dir(args.dir))
    if not lifecycle.is_up(state):
        raise _user_error(f"no sandbox running in {state.root}; fix: run `llmops sandbox up` first")
    try:
        if args.action == "stop":
            lifecycle.stop_prometheus(state, progress=_progress)
        elif args.action == "start":
            info = lifecycle.start_prometheus(state, progress=_progress)
            print(info.prometheus_url)
        else:
            lifecycle.stop_prometheus(state, progress=_progress)
            print(lifecycle.start_prometheus(state, progress=_progress).prometheus_url)
    except lifecycle.SandboxError as exc:
        raise _user_error(str(exc))
    return 0


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="state directory (default $LLMOPS_SANDBOX_DIR or /tmp/llmops-sandbox)")


def register(subparsers) -> None:
    p = subparsers.add_parser("sandbox", help="local Kubernetes: a control plane and real nodes with fake GPUs",
                              description=__doc__)
    sub = p.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sub.required = True

    up = sub.add_parser("up", help="start the sandbox (safe if already up)")
    _add_dir(up)
    up.add_argument("--bin-dir", help="directory with kube-apiserver, kube-controller-manager, kube-scheduler"
                                      " (else $KUBEBUILDER_ASSETS, $PATH, the cache, or build them)")
    up.add_argument("--nodes", help="node file (YAML); default: the shipped 2x4 A100 + 2 edge sites x 2x1 L4")
    up.add_argument("--bridge", default=lifecycle.default_bridge(),
                    help="host bridge for pod networking (default $LLMOPS_SANDBOX_BRIDGE or llmops0)")
    up.add_argument("--pod-cidr", default=lifecycle.default_pod_cidr(),
                    help="pod IP range (default $LLMOPS_SANDBOX_POD_CIDR or 10.244.0.0/16)")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    up.set_defaults(func=cmd_up)

    from .demo import register as register_demo

    register_demo(sub)

    bins = sub.add_parser("binaries", help="find the control-plane and node binaries (kubelet, kube-proxy), "
                                           "building them once if missing")
    bins.add_argument("--bin-dir", help="directory with kube-apiserver, kube-controller-manager, kube-scheduler")
    bins.set_defaults(func=cmd_binaries)

    down = sub.add_parser("down", help="stop everything and remove the state directory (safe if down)")
    _add_dir(down)
    down.set_defaults(func=cmd_down)

    st = sub.add_parser("status", help="show what runs (exit 1 if down)")
    _add_dir(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    kc = sub.add_parser("kubeconfig", help="print the kubeconfig path (or --print its content)")
    _add_dir(kc)
    kc.add_argument("--print", action="store_true", help="print the content instead of the path")
    kc.set_defaults(func=cmd_kubeconfig)

    pr = sub.add_parser("prometheus", help="stop/start/restart only the sandbox's Prometheus")
    _add_dir(pr)
    pr.add_argument("action", choices=["start", "stop", "restart"])
    pr.set_defaults(func=cmd_prometheus)
