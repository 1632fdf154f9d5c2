"""One pod on a simulated node: its network namespace, token, volumes, container processes,
probes and status reports. One thread per pod; the agent feeds it pod updates."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kubernetes.client.rest import ApiException

from . import network, processes
from .controlplane import SERVICE_ACCOUNT_ISSUER
from .images import UnknownImage, container_argv, image_env
from .kubeapi import now_iso
from .mounts import SERVICE_ACCOUNT_SUBDIR, host_path_source, launch_script, plan_mounts
from .podenv import EnvConfigError, container_env, expand_all, gpu_limit
from .podstatus import ContainerView, build_pod_status, restart_backoff, should_restart
from .probe_run import run_hook, run_probe
from .probes import ContainerProbes, ProbeConfigError, parse_probe

if TYPE_CHECKING:
    from .kubeapi import NodeApi
    from .state import SandboxInfo, StateDir

log = logging.getLogger("llmops_sandbox.pod")

TOKEN_SECONDS = 3600
TOKEN_REFRESH_SECONDS = TOKEN_SECONDS * 0.8
POLL_SECONDS = 0.5
# After preStop hooks the kubelet always leaves SIGTERM at least this long before SIGKILL
# (minimumGracePeriodInSeconds in pkg/kubelet/kuberuntime/kuberuntime_container.go).
MIN_GRACE_AFTER_HOOKS = 2.0


TERMINATION_MESSAGE_BYTES, TERMINATION_MESSAGE_LINES = 2048, 80  # the kubelet's limits


def log_tail(path: Path) -> str | None:
    """The end of a container's last run's output, as FallbackToLogsOnError reports it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))   # only the end matters
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("--- ") and " starting " in line]
    run = lines[starts[-1] + 1:] if starts else lines   # the agent writes one such line per start
    tail = "\n".join(run[-TERMINATION_MESSAGE_LINES:]).strip()[-TERMINATION_MESSAGE_BYTES:]
    return tail or None


@dataclass
class ContainerRun:
    spec: dict
    is_init: bool = False
    proc: subprocess.Popen | None = None
    state: str = "waiting"
    reason: str | None = "ContainerCreating"
    message: str | None = None
    started_mono: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    next_start: float = 0.0
    last_terminated: dict | None = None
    probes: ContainerProbes = field(default_factory=ContainerProbes)
    env: dict[str, str] = field(default_factory=dict)
    kill_reason: str | None = None
    blocked: bool = False          # unknown image / bad config: never started until fixed

    @property
    def name(self) -> str:
        return self.spec["name"]

    def view(self) -> ContainerView:
        running = self.state == "running"
        return ContainerView(
            name=self.name, image=self.spec.get("image", ""), state=self.state, reason=self.reason,
            message=self.message, started_at=self.started_at, finished_at=self.finished_at,
            exit_code=self.exit_code, restart_count=self.restart_count,
            ready=running and not self.is_init and self.probes.ready,
            started=running and self.probes.started,
            container_id=f"sandbox://{self.proc.pid}" if self.proc else None,
            last_terminated=self.last_terminated,
        )


@dataclass(frozen=True)
class WorkerContext:
    """What a pod worker needs of its node agent, and nothing more: the agent's API client and
    sandbox facts, the node labels and image rules, and the agent's shared IP pool and
    bookkeeping as callables (they take the agent's lock)."""

    kube: "NodeApi"
    info: "SandboxInfo"
    state: "StateDir"
    prefixlen: int
    node_labels: dict[str, dict[str, str]]
    image_rules: list
    python: str
    allocate_ip: Callable[[str], str]
    release_ip: Callable[[str], None]
    worker_done: Callable[[str, "PodWorker"], None]


class PodWorker(threading.Thread):
    def __init__(self, ctx: WorkerContext, pod: dict):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.node_name: str = pod["spec"]["nodeName"]
        self.dir: Path = ctx.state.pods / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self.run_dir = self.dir / "run"
        self.volumes_dir = self.dir / "volumes"
        self.node_root = ctx.state.node_root(self.node_name)
        self.wake = threading.Event()
        self.stop_grace: float | None = None     # set: stop now (pod object gone / agent exits)
        self.start_time = now_iso()
        self.pod_ip: str | None = None
        self.net: network.PodNetwork | None = None
        self.token_at: float | None = None
        self.setup_done = False
        self.setup_message = ""
        self.init_failed = False
        self.last_status: dict | None = None
        self.gone = False
        self.host_network = bool(pod["spec"].get("hostNetwork"))
        self.init_containers = [ContainerRun(c, is_init=True) for c in pod["spec"].get("initContainers") or ()]
        self.containers = [ContainerRun(c) for c in pod["spec"].get("containers") or ()]

    # --- called from the agent's watch thread
    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def stop(self, grace: float) -> None:
        self.stop_grace = grace
        self.wake.set()

    # --- the pod's thread
    def run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - a broken pod must not take the agent down
            log.exception("pod %s/%s: worker failed", self.namespace, self.pod_name)
            self._kill_all(2.0)
        finally:
            self._cleanup()
            self.ctx.worker_done(self.uid, self)

    def _loop(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            if self.stop_grace is not None:
                self._kill_all(self.stop_grace)
                return
            meta = self.pod["metadata"]
            if meta.get("deletionTimestamp"):
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
                self._terminate(float(grace))
                self.ctx.kube.delete_pod_now(self.namespace, self.pod_name, self.uid)
                return
            now = time.monotonic()
            if not self.setup_done:
                self._setup()
            if self.setup_done:
                self._step(now)
                self._refresh_token(now)
            self._report()
            if self.gone:
                self._kill_all(0.5)
                return
            self.wake.wait(self._sleep_time(time.monotonic()))
            self.wake.clear()

    # --- setup: network, token, volumes
    def _setup(self) -> None:
        try:
            if self.host_network:
                self.pod_ip = self.ctx.info.gateway_ip
            elif self.net is None:
                self.pod_ip = self.ctx.allocate_ip(self.uid)
                self.net = network.create_pod_network(
                    self.ctx.info.bridge, self.uid, self.pod_ip, self.ctx.prefixlen, self.ctx.info.gateway_ip)
            self._write_service_account()
            self._materialize_volumes()
            for c in self.init_containers + self.containers:
                try:
                    c.probes = ContainerProbes.from_container(c.spec)
                except ProbeConfigError as exc:
                    c.blocked, c.reason, c.message = True, "CreateContainerConfigError", str(exc)
            self.setup_done = True
            self.setup_message = ""
        except (ApiException, network.NetworkError, EnvConfigError, OSError) as exc:
            self.setup_message = f"sandbox setup failed: {getattr(exc, 'reason', None) or exc}"
            for c in self.init_containers + self.containers:
                c.message = self.setup_message
            log.warning("pod %s/%s: %s", self.namespace, self.pod_name, self.setup_message)

    def _service_account(self) -> str | None:
        spec = self.pod["spec"]
        if spec.get("automountServiceAccountToken") is False:
            return None
        return spec.get("serviceAccountName") or "default"

    def _write_service_account(self) -> None:
        sa = self._service_account()
        if sa is None:
            return
        token = self.ctx.kube.request_token(self.namespace, sa, self.pod_name, self.uid,
                                              SERVICE_ACCOUNT_ISSUER, TOKEN_SECONDS)
        target = self.run_dir / SERVICE_ACCOUNT_SUBDIR
        target.mkdir(parents=True, exist_ok=True)
        for name, data in (("token", token), ("namespace", self.namespace),
                           ("ca.crt", Path(self.ctx.info.ca_file).read_text())):
            tmp = target / f".{name}.tmp"
            tmp.write_text(data)
            tmp.replace(target / name)   # atomic, so a refresh never shows a half-written token
        self.token_at = time.monotonic()

    def _refresh_token(self, now: float) -> None:
        """Bound tokens expire; rewrite it well before, as the kubelet does."""
        if self.token_at is None or now - self.token_at < TOKEN_REFRESH_SECONDS:
            return
        try:
            self._write_service_account()
        except ApiException as exc:
            log.warning("pod %s/%s: token refresh failed: %s", self.namespace, self.pod_name, exc.reason)

    def _materialize_volumes(self) -> None:
        for volume in self.pod["spec"].get("volumes") or ():
            if volume.get("hostPath"):
                self._prepare_host_path(volume)
                continue
            dest = self.volumes_dir / volume["name"]
            dest.mkdir(parents=True, exist_ok=True)
            for kind, key, name_key in (("secret", "secret", "secretName"), ("configmap", "configMap", "name")):
                source = volume.get(key)
                if not source:
                    continue
                data = self.ctx.kube.read_data_bytes(kind, self.namespace, source[name_key])
                if data is None:
                    if source.get("optional"):
                        continue
                    raise EnvConfigError(f'{kind} "{source[name_key]}" not found')
                items = source.get("items")
                files = {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data
                for rel, content in files.items():
                    path = dest / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)

    def _prepare_host_path(self, volume: dict) -> None:
        """The kubelet's hostPath type checks, on the simulated node's filesystem."""
        path = Path(host_path_source(volume, self.node_root))
        kind = volume["hostPath"].get("type") or ""
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "Directory" and not path.is_dir():
            raise EnvConfigError(f'hostPath type check failed: {volume["hostPath"]["path"]} is not a directory')
        elif not kind and not path.exists():
            path.mkdir(parents=True, exist_ok=True)  # untyped: mounted as an empty directory

    # --- containers
    def _base_env(self, container: dict) -> dict[str, str]:
        info = self.ctx.info
        return {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": "/root",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": self.pod_name,
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": info.gateway_ip,
            "KUBERNETES_SERVICE_PORT": str(info.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(info.apiserver_port),
            "LLMOPS_SANDBOX": "1",
            "LLMOPS_SIM_GPU": self.ctx.node_labels.get(self.node_name, {}).get("nvidia.com/gpu.product", ""),
            "LLMOPS_SIM_GPU_COUNT": str(gpu_limit(container)),
        }

    def _start(self, c: ContainerRun, now: float) -> None:
        spec = c.spec
        try:
            # The image tag may pick the stand-in's behaviour (e.g. which vLLM release the
            # simulator emulates); the container's own env still wins.
            base = {**self._base_env(spec), **image_env(spec.get("image", ""), self.ctx.image_rules,
                                                        expand_all(spec.get("command"), {}) or [])}
            env = container_env(spec, self.pod, self.pod_ip, self.ctx.info.gateway_ip,
                                self._lookup, self.ctx.kube.read_data, base=base)
            argv = container_argv(spec.get("image", ""), expand_all(spec.get("command"), env),
                                  expand_all(spec.get("args"), env), self.ctx.image_rules,
                                  self.ctx.python)
        except UnknownImage as exc:
            if c.reason not in ("ErrImagePull", "ImagePullBackOff"):
                self._event("Failed", str(exc), "Warning")
            c.state, c.message = "waiting", str(exc)
            c.reason = "ImagePullBackOff" if c.reason in ("ErrImagePull", "ImagePullBackOff") else "ErrImagePull"
            c.next_start = now + 5.0  # the rules file may be fixed by restarting the agent only
            return
        except (EnvConfigError, ApiException) as exc:
            c.state, c.reason, c.message = "waiting", "CreateContainerConfigError", str(getattr(exc, "reason", None) or exc)
            c.next_start = now + 2.0
            return
        mounts = plan_mounts(self.pod, spec, self.volumes_dir, self.node_root, protected=self._host_paths_in_use())
        script = launch_script(str(self.run_dir), mounts, spec.get("workingDir"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / f"{c.name}.log"
        with open(log_path, "ab") as out:
            out.write(f"--- {now_iso()} starting {argv}\n".encode())
            out.flush()
            # `ip netns exec` also gives a private mount namespace; host-network pods get one from unshare.
            enter = (["unshare", "--mount", "--propagation", "private"] if self.host_network
                     else ["ip", "netns", "exec", self.net.netns])
            c.proc = subprocess.Popen(
                [*enter, "sh", "-c", script, "sh", *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=str(self.dir), start_new_session=True,
            )
        (self.dir / f"{c.name}.pid").write_text(f"{c.proc.pid} {processes.process_start_time(c.proc.pid) or 0}\n")
        c.env = env
        c.state, c.reason, c.message = "running", None, None
        c.started_mono, c.started_at = now, now_iso()
        c.exit_code = c.finished_at = None
        c.kill_reason = None
        c.probes = ContainerProbes.from_container(spec)
        self._event("Started", f"Started container {c.name}")

    def _event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.ctx.kube.post_event(self.namespace, self.pod, reason, message, type_, host=self.node_name)

    def _lookup(self, kind: str, namespace: str, name: str, key: str) -> str | None:
        data = self.ctx.kube.read_data(kind, namespace, name)
        return None if data is None else data.get(key)

    def _reap(self, c: ContainerRun, now: float) -> bool:
        """Notice a container's exit; True if it exited."""
        if c.proc is None or c.proc.poll() is None:
            return False
        code = c.proc.returncode
        if code < 0:
            code = 128 - code   # killed by signal N -> 128+N, as container runtimes report
        processes.kill_group(c.proc.pid, signal.SIGKILL)   # leftovers of the group
        c.exit_code, c.finished_at = code, now_iso()
        c.state = "terminated"
        c.reason = "Completed" if code == 0 else "Error"
        c.message = c.kill_reason
        if code != 0 and not c.message and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            c.message = log_tail(self.dir / f"{c.name}.log")
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if c.is_init and code != 0 and policy == "Never":
            self.init_failed = True
        restart = should_restart(policy if not c.is_init else ("Never" if policy == "Never" else "OnFailure"), code)
        if restart:
            c.last_terminated = {"exitCode": code, "reason": c.reason, "startedAt": c.started_at,
                                 "finishedAt": c.finished_at, **({"message": c.message} if c.message else {})}
            delay = restart_backoff(c.restart_count + 1)
            c.state, c.reason = "waiting", "CrashLoopBackOff"
            c.message = f"back-off {delay:g}s restarting failed container={c.name} pod={self.pod_name}"
            c.next_start = now + delay
            c.restart_count += 1
            c.proc = None
        return True

    def _step(self, now: float) -> None:
        # Init containers run one at a time, to completion, before the others start.
        for c in self.init_containers:
            if c.state == "terminated" and c.exit_code == 0:
                continue
            if self.init_failed or c.blocked:
                return
            self._reap(c, now)
            if c.state == "waiting" and c.proc is None and now >= c.next_start:
                self._start(c, now)
            if not (c.state == "terminated" and c.exit_code == 0):
                return
        for c in self.containers:
            if c.blocked:
                continue
            self._reap(c, now)
            if c.state == "waiting" and c.proc is None and now >= c.next_start:
                self._start(c, now)
            if c.state == "running":
                self._probe(c)

    def _probe(self, c: ContainerRun) -> None:
        for which, tracker in c.probes.due(time.monotonic(), c.started_mono):
            ok, message = run_probe(tracker.probe, self.pod_ip or "", c.proc.pid if c.proc else None, c.env)
            c.probes.record(which, ok, time.monotonic(), message)
        reason = c.probes.restart_reason()
        if reason and c.proc is not None:
            log.info("pod %s/%s container %s: %s; restarting", self.namespace, self.pod_name, c.name, reason)
            c.kill_reason = reason
            self._event("Killing", f"Container {c.name} {reason}, will be restarted", "Warning")
            grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
            processes.terminate_group(c.proc.pid, min(grace, 10.0))
            c.proc.wait()
            self._reap(c, time.monotonic())

    def _sleep_time(self, now: float) -> float:
        wait = POLL_SECONDS
        for c in self.init_containers + self.containers:
            if c.state == "waiting" and c.proc is None and not c.blocked:
                wait = min(wait, max(0.01, c.next_start - now))
        if not self.setup_done:
            wait = 1.0
        return wait

    def _host_paths_in_use(self) -> list[str]:
        """Host paths a container's process needs to stay visible (see mounts.plan_mounts)."""
        import llmops
        import llmops_load
        import llmops_sandbox
        import llmops_sim

        packages = [str(Path(m.__file__).resolve().parent) for m in (llmops, llmops_sandbox, llmops_sim, llmops_load)]
        return [sys.prefix, sys.base_prefix, *packages,
                str(self.volumes_dir.resolve()), str(self.run_dir.resolve())]

    # --- status
    def _previous_conditions(self, gates: list[str]) -> list[dict]:
        """Our own conditions as we last wrote them; readiness-gate conditions as others last
        wrote them (the watched pod), so a gate that turns True makes the pod Ready."""
        watched = (self.pod.get("status") or {}).get("conditions") or []
        own = (self.last_status or {}).get("conditions") or watched
        return [c for c in own if c.get("type") not in gates] + [c for c in watched if c.get("type") in gates]

    def _report(self) -> None:
        spec = self.pod["spec"]
        gates = [g["conditionType"] for g in spec.get("readinessGates") or ()]
        status = build_pod_status(
            containers=[c.view() for c in self.containers],
            init_containers=[c.view() for c in self.init_containers],
            restart_policy=spec.get("restartPolicy", "Always"),
            pod_ip=self.pod_ip if (self.net or self.host_network) and self.setup_done else None,
            host_ip=self.ctx.info.gateway_ip,
            start_time=self.start_time,
            now=now_iso(),
            previous_conditions=self._previous_conditions(gates),
            readiness_gates=gates,
            init_failed=self.init_failed,
        )
        if status == self.last_status:
            return
        try:
            self.ctx.kube.patch_pod_status(self.namespace, self.pod_name, status)
            self.last_status = status
        except ApiException as exc:
            if exc.status == 404:
                self.gone = True
            else:
                log.warning("pod %s/%s: status patch failed: %s %s", self.namespace, self.pod_name, exc.status, exc.reason)

    # --- teardown
    def _terminate(self, grace: float) -> None:
        """The kubelet's pod deletion: every running container's preStop hook at once, with
        the grace period as their budget; then SIGTERM; SIGKILL when the grace period is over
        (at least MIN_GRACE_AFTER_HOOKS after the hooks). The agent stopping (or the pod
        object vanishing) cuts the hooks short."""
        deadline = time.monotonic() + grace
        hooks = [threading.Thread(target=self._pre_stop, args=(c, grace), name=f"prestop-{c.name}", daemon=True)
                 for c in self.containers
                 if c.proc is not None and c.proc.poll() is None and (c.spec.get("lifecycle") or {}).get("preStop")]
        for hook in hooks:
            hook.start()
        while any(h.is_alive() for h in hooks) and time.monotonic() < deadline and self.stop_grace is None:
            for hook in hooks:
                hook.join(timeout=0.1)
        if self.stop_grace is not None:
            self._kill_all(self.stop_grace)
            return
        self._kill_all(max(MIN_GRACE_AFTER_HOOKS, deadline - time.monotonic()))

    def _pre_stop(self, c: ContainerRun, budget: float) -> None:
        try:
            handler = parse_probe((c.spec.get("lifecycle") or {}).get("preStop"), c.spec.get("ports") or ())
        except ProbeConfigError as exc:
            ok, message = False, str(exc)
        else:
            handler = dataclasses.replace(handler, timeout=budget)
            started = time.monotonic()
            ok, message = run_hook(handler, self.pod_ip or "", c.proc.pid if c.proc else None, c.env,
                                   self.dir / f"{c.name}.log")
            log.info("pod %s/%s container %s: preStop hook %s after %.1fs", self.namespace, self.pod_name, c.name,
                     "done" if ok else f"failed ({message})", time.monotonic() - started)
        if not ok:
            self._event("FailedPreStopHook", f"PreStopHook failed: {message}", "Warning")

    def _kill_all(self, grace: float) -> None:
        """SIGTERM every running container's process group, wait up to grace, SIGKILL the rest."""
        running = [c for c in self.init_containers + self.containers if c.proc is not None and c.proc.poll() is None]
        for c in running:
            processes.kill_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.proc.poll() is None for c in running):
            time.sleep(0.05)
        for c in self.init_containers + self.containers:
            if c.proc is not None:
                processes.kill_group(c.proc.pid, signal.SIGKILL)
                try:
                    c.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log.error("pod %s/%s: container %s did not die", self.namespace, self.pod_name, c.name)

    def _cleanup(self) -> None:
        if self.net is not None:
            for pid in network.netns_pids(self.net.netns):   # anything that escaped its group
                processes.kill_group(pid, signal.SIGKILL)
            network.delete_pod_network(self.net.netns)
            self.net = None
        self.ctx.release_ip(self.uid)
        shutil.rmtree(self.run_dir, ignore_errors=True)   # tokens do not outlive the pod

    def describe(self) -> dict[str, Any]:
        return {"pod": f"{self.namespace}/{self.pod_name}", "ip": self.pod_ip,
                "containers": {c.name: c.state for c in self.containers}}
