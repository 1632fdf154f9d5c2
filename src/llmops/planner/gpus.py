"""GPU catalogue, keyed by the `nvidia.com/gpu.product` label NVIDIA GPU feature discovery puts
on nodes (the NVML product name with spaces turned into '-', e.g. NVIDIA-A100-SXM4-80GB).

Memory is the total NVML / nvidia-smi reports (MiB), which is what vLLM multiplies by
--gpu-memory-utilization; it is a little below the marketing figure (an "80 GB" H100 reports
81559 MiB = 79.6 GiB). Compute capability from NVIDIA's table https://developer.nvidia.com/cuda-gpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class GPUInfo:
    product: str  # the canonical nvidia.com/gpu.product value
    memory_mib: int
    compute_capability: tuple[int, int]
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB

    @property
    def capability(self) -> int:
        """Compute capability as vLLM writes it (8.9 -> 89)."""
        return self.compute_capability[0] * 10 + self.compute_capability[1]

    @property
    def capability_text(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


# product label, memory (MiB as nvidia-smi reports it), compute capability, other names people use.
GPU_CATALOGUE: tuple[GPUInfo, ...] = (
    GPUInfo("NVIDIA-H100-80GB-HBM3", 81559, (9, 0), ("H100-SXM5-80GB", "H100-SXM", "H100-SXM5", "H100-80GB", "H100")),
    GPUInfo("NVIDIA-H100-PCIe", 81559, (9, 0), ("H100-PCIE-80GB", "H100-80GB-PCIE")),
    GPUInfo("NVIDIA-H100-NVL", 95830, (9, 0), ("H100-NVL-94GB", "H100-94GB")),
    GPUInfo("NVIDIA-H200", 143771, (9, 0), ("H200-141GB", "H200-SXM", "H200-NVL")),
    GPUInfo("NVIDIA-A100-SXM4-80GB", 81920, (8, 0), ("A100-80GB", "A100-SXM-80GB", "A100-SXM4")),
    GPUInfo("NVIDIA-A100-80GB-PCIe", 81920, (8, 0), ("A100-PCIE-80GB",)),
    # A bare "A100" means the 40 GB part: assuming less memory never admits what cannot run.
    GPUInfo("NVIDIA-A100-SXM4-40GB", 40960, (8, 0), ("A100-40GB", "A100-SXM-40GB", "A100")),
    GPUInfo("NVIDIA-A100-PCIE-40GB", 40960, (8, 0), ("A100-40GB-PCIE",)),
    GPUInfo("NVIDIA-L40S", 46068, (8, 9), ("L40S-48GB",)),
    GPUInfo("NVIDIA-L40", 46068, (8, 9), ("L40-48GB",)),
    GPUInfo("NVIDIA-L4", 23034, (8, 9), ("L4-24GB",)),
    GPUInfo("NVIDIA-A10G", 23028, (8, 6), ("A10G-24GB",)),
    GPUInfo("NVIDIA-A10", 23028, (8, 6), ("A10-24GB",)),
    GPUInfo("Tesla-T4", 15360, (7, 5), ("T4", "T4-16GB")),
    GPUInfo("Tesla-V100-SXM2-16GB", 16384, (7, 0), ("V100-16GB", "V100")),
    GPUInfo("Tesla-V100-SXM2-32GB", 32768, (7, 0), ("V100-32GB",)),
    GPUInfo("Tesla-V100-PCIE-16GB", 16384, (7, 0)),
    GPUInfo("Tesla-V100-PCIE-32GB", 32768, (7, 0)),
    GPUInfo("NVIDIA-GeForce-RTX-4090", 24564, (8, 9), ("RTX-4090", "4090")),
    GPUInfo("NVIDIA-GeForce-RTX-3090", 24576, (8, 6), ("RTX-3090", "3090")),
    GPUInfo("NVIDIA-RTX-A6000", 49140, (8, 6), ("A6000", "RTX-A6000-48GB")),
    GPUInfo("NVIDIA-RTX-6000-Ada-Generation", 49140, (8, 9), ("RTX-6000-ADA", "RTX-6000-ADA-GENERATION")),
    # Jetson shares its memory with the CPU; the figure is what the GPU can address at most.
    GPUInfo(
        "NVIDIA-Jetson-AGX-Orin-64GB",
        62841,
        (8, 7),
        ("ORIN", "JETSON-AGX-ORIN", "AGX-ORIN", "JETSON-AGX-ORIN-64GB", "AGX-ORIN-64GB"),
        note="unified memory shared with the CPU",
    ),
    GPUInfo(
        "NVIDIA-Jetson-AGX-Orin-32GB",
        31390,
        (8, 7),
        ("JETSON-AGX-ORIN-32GB", "AGX-ORIN-32GB"),
        note="unified memory shared with the CPU",
    ),
)

_VENDOR_PREFIXES = ("NVIDIA-", "TESLA-", "GEFORCE-")
# GPU feature discovery appends -SHARED when time-slicing/MPS is on, and -MIG-<profile> for MIG.
_SHARED_SUFFIX = re.compile(r"-SHARED$")
_MIG_SUFFIX = re.compile(r"-MIG-(\d+)G\.(\d+)GB$")


def _key(name: str) -> str:
    key = re.sub(r"[\s_]+", "-", name.strip().upper())
    changed = True
    while changed:
        changed = False
        for prefix in _VENDOR_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                changed = True
    return key


_INDEX: dict[str, GPUInfo] = {}
for _gpu in GPU_CATALOGUE:
    for _name in (_gpu.product, *_gpu.aliases):
        _INDEX.setdefault(_key(_name), _gpu)


def lookup_gpu(product: Optional[str]) -> Optional[GPUInfo]:
    """The catalogue entry for a gpu.product label value (or a common name), tolerant of case,
    spaces/underscores, vendor prefixes, the -SHARED suffix and MIG slices; None if unknown."""
    if not product:
        return None
    key = _SHARED_SUFFIX.sub("", _key(product))
    mig = _MIG_SUFFIX.search(key)
    if mig:
        base = _INDEX.get(key[: mig.start()])
        if base is None:
            return None
        # A MIG slice has the profile's memory (its name counts GB, ~1000 MiB each) and the
        # parent's architecture.
        return GPUInfo(product, int(mig.group(2)) * 1000, base.compute_capability, note=f"MIG slice of {base.product}")
    return _INDEX.get(key)


def known_gpu_products() -> list[str]:
    return [gpu.product for gpu in GPU_CATALOGUE]
