"""spec.engine.multimodal as `vllm serve` flags.

Spellings read from vllm/engine/arg_utils.py of both pinned releases (0.11.0 and 0.33.0 add
the same four flags to their MultiModalConfig group): --limit-mm-per-prompt takes JSON with a
count per modality (the count-only form both releases parse; 0.33 also accepts per-modality
option objects), --mm-processor-kwargs JSON forwarded to the model's processor (Qwen2.5-VL's
takes max_pixels), --mm-processor-cache-gb and --mm-encoder-tp-mode {weights,data}.
"""

from __future__ import annotations

import json
from typing import Optional

from llmops.api.v1alpha1 import MultimodalSpec


def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def multimodal_args(spec: Optional[MultimodalSpec]) -> list[str]:
    if spec is None:
        return []
    args: list[str] = []
    limits = {modality: count for modality, count in (("image", spec.images_per_prompt),
                                                       ("video", spec.videos_per_prompt)) if count is not None}
    if limits:
        args += ["--limit-mm-per-prompt", _json(limits)]
    if spec.max_image_pixels is not None:
        args += ["--mm-processor-kwargs", _json({"max_pixels": spec.max_image_pixels})]
    if spec.processor_cache_gib is not None:
        args += ["--mm-processor-cache-gb", f"{spec.processor_cache_gib:g}"]
    if spec.encoder_tensor_parallel_mode is not None:
        args += ["--mm-encoder-tp-mode", spec.encoder_tensor_parallel_mode]
    return args
