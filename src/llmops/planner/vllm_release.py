"""Facts about vLLM releases that the operator renders and plans with. Pure.

The simulator's per-release table (llmops_sim.releases) takes its batch defaults from
here, so the operator and the stand-in engine cannot disagree about them.
"""

from __future__ import annotations

import re
from typing import Optional

Release = tuple[int, int]  # (major, minor)
NEWEST_KNOWN: Release = (0, 33)

_TAG_VERSION = re.compile(r":v?(\d+)\.(\d+)(?:\.\d+)?(?:[-.+].*)?$")


def image_release(image: str) -> Optional[Release]:
    """(major, minor) of a vllm/vllm-openai:vX.Y.Z tag; None for other tags (latest, a digest)."""
    match = _TAG_VERSION.search(image.split("@", 1)[0])
    return (int(match.group(1)), int(match.group(2))) if match else None


def batch_defaults(memory_gib: float, device_name: str, release: Optional[Release] = None) -> tuple[int, int]:
    """vLLM's API-server defaults (max_num_batched_tokens, max_num_seqs) for a GPU.

    vllm/engine/arg_utils.py, UsageContext.OPENAI_API_SERVER: 0.11 (_set_default_args):
    >= 70 GiB and not an A100 -> 8192 / 1024, else 2048 / 256. 0.33 (get_batch_defaults)
    adds >= 160 GiB (B200-class) -> 16384 / 1024. An unknown release is taken as the newest.
    """
    release = release or NEWEST_KNOWN
    if release >= (0, 33) and memory_gib >= 160:
        return 16384, 1024
    if memory_gib >= 70 and "a100" not in device_name.lower():
        return 8192, 1024
    return 2048, 256
