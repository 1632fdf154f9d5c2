"""A device plugin for fake GPUs, speaking the kubelet's real device-plugin gRPC API (v1beta1).

The kubelet's API definition is the api.proto of the Kubernetes source the node binaries
are built from (staging/src/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto, kept
in the binary cache by build-control-plane.sh); it is compiled with grpcio-tools on first
use. Like NVIDIA's k8s-device-plugin, devices are GPU UUIDs, the resource is nvidia.com/gpu,
and Allocate answers NVIDIA_VISIBLE_DEVICES with the allocated UUIDs (what the NVIDIA
container runtime reads). The devices are fake; the allocation is the kubelet's own.

Per node: serve on <device-plugins>/llmops-gpu.sock, register at kubelet.sock, and do it
again whenever the kubelet restarts (it removes every socket in the directory then)."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

from .shortpaths import link_short_dir, unlink_short_dir

log = logging.getLogger("llmops_sandbox.deviceplugin")

RESOURCE = "nvidia.com/gpu"
SOCKET_NAME = "llmops-gpu.sock"
KUBELET_SOCKET = "kubelet.sock"
API_VERSION = "v1beta1"
PROTO_NAME = "deviceplugin-v1beta1.proto"


class DevicePluginError(RuntimeError):
    pass


def proto_source(bin_dir: Path) -> Path:
    path = bin_dir / PROTO_NAME
    if not path.exists():
        raise DevicePluginError(f"{path} missing; fix: rebuild the node binaries "
                                "(`llmops sandbox binaries` keeps the kubelet's api.proto there)")
    return path


def plain_proto(text: str) -> str:
    """The proto without gogoproto's import and options (Go code-generation hints only)."""
    text = re.sub(r'^import "github.com/gogo/protobuf/gogoproto/gogo.proto";\s*$', "", text, flags=re.M)
    text = re.sub(r"^option \(gogoproto\.[^;]*;\s*$", "", text, flags=re.M)
    return re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)


def load_api(bin_dir: Path, cache: Path | None = None):
    """(messages module, grpc module) generated from the kubelet's api.proto, cached by content."""
    text = plain_proto(proto_source(bin_dir).read_text())
    out = (cache or Path.home() / ".cache" / "llmops" / "deviceplugin") / hashlib.sha256(text.encode()).hexdigest()[:12]
    if not (out / "api_pb2_grpc.py").exists():
        from grpc_tools import protoc
        out.mkdir(parents=True, exist_ok=True)
        (out / "api.proto").write_text(text)
        import grpc_tools
        include = str(Path(grpc_tools.__file__).parent / "_proto")
        code = protoc.main(["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}",
                            f"--grpc_python_out={out}", str(out / "api.proto")])
        if code != 0:
            raise DevicePluginError(f"protoc failed ({code}) on {out / 'api.proto'}")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


PLUGIN_LINK = "dp"     # /run/llmops/dp-<hash> -> the node's device-plugins directory


def gpu_uuids(node: str, count: int) -> list[str]:
    """Stable fake UUIDs in NVIDIA's format (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."""
    ids = []
    for i in range(count):
        h = hashlib.sha256(f"{node}/{i}".encode()).hexdigest()
        ids.append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}")
    return ids


def allocate_envs(device_ids: list[str], product: str = "") -> dict[str, str]:
    """What NVIDIA's plugin hands the container runtime, plus what the simulator reads
    in place of querying the devices (nvidia-smi): their product and count."""
    envs = {"NVIDIA_VISIBLE_DEVICES": ",".join(device_ids), "LLMOPS_SIM_GPU_COUNT": str(len(device_ids))}
    if product:
        envs["LLMOPS_SIM_GPU"] = product
    return envs


class NodePlugin:
    """The plugin of one node: a gRPC server on its socket plus the registration loop."""

    def __init__(self, node: str, count: int, plugin_dir: Path, api, product: str = ""):
        self.node, self.product = node, product
        self.real_dir = plugin_dir
        self.plugin_dir = link_short_dir(plugin_dir, PLUGIN_LINK)
        self.pb, self.pb_grpc = api
        self.devices = gpu_uuids(node, count)
        self.server = None
        self.kubelet_inode: int | None = None
        self.stopping = threading.Event()

    # --- the DevicePlugin service
    def servicer(self):
        pb, plugin = self.pb, self

        class Servicer(self.pb_grpc.DevicePluginServicer):
            def GetDevicePluginOptions(self, request, context):
                return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=False)

            def ListAndWatch(self, request, context):
                yield pb.ListAndWatchResponse(devices=[pb.Device(ID=d, health="Healthy") for d in plugin.devices])
                while not plugin.stopping.is_set() and context.is_active():
                    plugin.stopping.wait(1.0)

            def GetPreferredAllocation(self, request, context):
                return pb.PreferredAllocationResponse()

            def Allocate(self, request, context):
                responses = []
                for creq in request.container_requests:
                    ids = list(creq.devicesIDs)
                    log.info("node %s: allocate %s", plugin.node, ",".join(ids))
                    responses.append(pb.ContainerAllocateResponse(envs=allocate_envs(ids, plugin.product)))
                return pb.AllocateResponse(container_responses=responses)

            def PreStartContainer(self, request, context):
                return pb.PreStartContainerResponse()
        return Servicer()

    def serve(self) -> None:
        import grpc
        sock = self.plugin_dir / SOCKET_NAME
        sock.unlink(missing_ok=True)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.pb_grpc.add_DevicePluginServicer_to_server(self.servicer(), self.server)
        self.server.add_insecure_port(f"unix://{sock}")
        self.server.start()

    def register(self) -> None:
        import grpc
        with grpc.insecure_channel(f"unix://{self.plugin_dir / KUBELET_SOCKET}") as channel:
            stub = self.pb_grpc.RegistrationStub(channel)
            stub.Register(self.pb.RegisterRequest(version=API_VERSION, endpoint=SOCKET_NAME, resource_name=RESOURCE),
                          timeout=10)
        log.info("node %s: registered %d x %s with the kubelet", self.node, len(self.devices), RESOURCE)

    def step(self) -> None:
        """(Re)start and (re)register when the kubelet's socket is new or ours vanished."""
        kubelet_sock = self.plugin_dir / KUBELET_SOCKET
        try:
            inode = os.stat(kubelet_sock).st_ino
        except FileNotFoundError:
            return
        if inode == self.kubelet_inode and (self.plugin_dir / SOCKET_NAME).exists():
            return
        if self.server is not None:
            self.server.stop(0)
        self.serve()
        try:
            self.register()
            self.kubelet_inode = inode
        except Exception as exc:  # noqa: BLE001 - the kubelet may still be starting; retry
            log.warning("node %s: registration failed (%s); retrying", self.node, exc)

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.stop(0)
        unlink_short_dir(self.real_dir, PLUGIN_LINK)


def run_plugins(plugins: list[NodePlugin], stopping: threading.Event, period: float = 0.5) -> None:
    while not stopping.is_set():
        for p in plugins:
            try:
                p.step()
            except Exception as exc:  # noqa: BLE001 - keep the other nodes' plugins alive
                log.warning("node %s: device plugin step failed: %s", p.node, exc)
        stopping.wait(period)
    for p in plugins:
        p.stop()
    time.sleep(0)
