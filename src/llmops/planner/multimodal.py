"""Admission checks for spec.engine.multimodal against what the catalogue knows of the model."""

from __future__ import annotations

from llmops.api.v1alpha1 import LLMDeploymentSpec
from llmops.planner.models import MODEL_CATALOGUE, ModelInfo
from llmops.planner.vllm_release import image_release

FIELD = "spec.engine.multimodal"


def _served_vlms() -> str:
    return ", ".join(m.name for m in MODEL_CATALOGUE if m.vision and not m.vision.removed_in_vllm)


def multimodal_problems(spec: LLMDeploymentSpec, model: ModelInfo) -> list[tuple[str, str]]:
    """(field path, message with the fix) for each reason the multimodal settings cannot work."""
    multimodal = spec.engine.multimodal
    vision = model.vision
    if vision is None:
        if multimodal is None:
            return []
        return [(FIELD, f"{model.name} is a text-only model (the planner's catalogue, {model.source}): vLLM "
                        f"would refuse image and video inputs. Fix: remove spec.engine.multimodal, or serve a "
                        f"vision-language model ({_served_vlms()})")]
    problems: list[tuple[str, str]] = []
    release = image_release(spec.engine.image)
    if vision.removed_in_vllm and (release is None or release >= vision.removed_in_vllm):
        problems.append(("spec.model.source", (
            f"{model.name} ({vision.family}) is not served by vLLM {spec.engine.image.rsplit(':', 1)[-1]}: "
            "vLLM removed the architecture in 0.10.2 (vllm/model_executor/models/registry.py). "
            f"Fix: serve another vision-language model ({_served_vlms()})")))
    if multimodal is None:
        return problems
    if multimodal.videos_per_prompt is not None and "video" not in vision.modalities:
        problems.append((f"{FIELD}.videosPerPrompt", (
            f"{model.name} takes images only (vLLM's implementation supports {', '.join(vision.modalities)}). "
            "Fix: remove videosPerPrompt")))
    if multimodal.max_image_pixels is not None and not vision.bounds_pixels:
        fixed = (f"{vision.image_size}x{vision.image_size} tiles" if vision.max_tiles > 1
                 else f"{vision.image_size}x{vision.image_size}")
        problems.append((f"{FIELD}.maxImagePixels", (
            f"{model.name}'s processor resizes every image to {fixed}, so there is no pixel bound to set "
            f"({vision.max_image_tokens()} tokens per image at most). Fix: remove maxImagePixels")))
    return problems
