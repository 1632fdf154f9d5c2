"""Vision towers of vision-language models: their parameters, and the tokens one image becomes.

Figures come from each model's config.json `vision_config` (layers = depth / num_hidden_layers,
hidden_size, intermediate_size, num_heads, patch_size) and preprocessor_config.json (pixel
bounds, tile size); the token rules are the models' own processors:

- Qwen2.5-VL (transformers image_processing_qwen2_vl.smart_resize): each side is rounded to a
  multiple of patch x merge (14 x 2 = 28 px), the area scaled into [min_pixels, max_pixels];
  14-px patches merged 2x2, so tokens = (h/28) x (w/28).
- Llama 3.2 Vision (image_processing_mllama.get_optimal_tiled_canvas): the image is fitted to
  a canvas of up to max_num_tiles 560-px tiles; each tile is (560/14)^2 patches + 1 CLS = 1601
  tokens. These go to the cross-attention layers, not the decoder's self-attention.
- Gemma 3 (SigLIP at 896x896, pooled 4x4): a fixed mm_tokens_per_image = 256 per image
  (pan-and-scan, off by default, is not modelled).

Under tensor parallel vLLM shards the vision tower like the language model
(vllm/model_executor/models/qwen2_5_vl.py, siglip.py: QKVParallelLinear / RowParallelLinear
with disable_tp=use_data_parallel), unless --mm-encoder-tp-mode data is set or the vision heads
do not divide by TP (vllm/model_executor/models/vision.py is_vit_use_data_parallel falls back
to data parallel): then every TP rank holds the whole tower.

The planner is importable from the simulator (which counts image tokens with image_tokens),
never the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

QWEN2_5_VL = "qwen2.5-vl"
MLLAMA = "mllama"
GEMMA3 = "gemma3"


@dataclass(frozen=True)
class VisionTower:
    family: str  # QWEN2_5_VL, MLLAMA or GEMMA3: selects the token rule and the parameter formula
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    patch_size: int
    output_size: int  # the projector's output: the language model's hidden size
    preprocessor: str  # where the pixel figures below come from
    # Qwen2.5-VL: patches merged merge x merge, pixel bounds of smart_resize
    merge_size: int = 1
    temporal_patch_size: int = 1
    min_pixels: int = 0
    max_pixels: int = 0
    # Llama 3.2 Vision: square tiles, global layers on top of the local ones, projector input
    image_size: int = 0
    max_tiles: int = 1
    global_layers: int = 0
    projector_input: int = 0
    # Gemma 3
    tokens_per_image: int = 0
    # the first vLLM minor release without the architecture (None: served by every pinned release)
    removed_in_vllm: Optional[tuple[int, int]] = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """What vLLM's implementation accepts (get_supported_mm_limits in its model file)."""
        return ("image", "video") if self.family == QWEN2_5_VL else ("image",)

    @property
    def bounds_pixels(self) -> bool:
        """Whether the processor has a max_pixels bound to override (the others resize to a fixed size)."""
        return self.family == QWEN2_5_VL

    @property
    def parameters(self) -> float:
        return _PARAMETER_FORMULAS[self.family](self)

    @property
    def parameters_billions(self) -> float:
        return self.parameters / 1e9

    def image_tokens(self, width: int, height: int, max_pixels: Optional[int] = None) -> int:
        """Placeholder tokens the processor makes of one width x height image; max_pixels
        overrides the processor's bound (mm_processor_kwargs) where the model has one."""
        if width < 1 or height < 1:
            raise ValueError(f"image size {width}x{height} must be at least 1x1")
        if self.family == QWEN2_5_VL:
            h, w = qwen_smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels,
                                     max_pixels or self.max_pixels)
            return (h // self.patch_size) * (w // self.patch_size) // (self.merge_size ** 2)
        if self.family == MLLAMA:
            rows, cols = mllama_tile_grid(width, height, self.image_size, self.max_tiles)
            return rows * cols * self.tokens_per_tile
        return self.tokens_per_image

    @property
    def tokens_per_tile(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1  # + the CLS token

    def max_image_tokens(self, max_pixels: Optional[int] = None) -> int:
        """Tokens of the largest image the processor produces (what vLLM profiles with)."""
        if self.family == QWEN2_5_VL:
            bound = max_pixels or self.max_pixels
            return bound // (self.patch_size * self.merge_size) ** 2
        if self.family == MLLAMA:
            return self.max_tiles * self.tokens_per_tile
        return self.tokens_per_image

    def encoder_patches(self, image_tokens: int) -> int:
        """Sequence length inside the vision encoder for an image of image_tokens tokens
        (before the 2x2 merge for Qwen; before the 4x4 pooling for Gemma 3)."""
        if self.family == QWEN2_5_VL:
            return image_tokens * self.merge_size ** 2
        if self.family == GEMMA3:
            return (self.image_size // self.patch_size) ** 2
        return image_tokens

    def sharded(self, tp: int, encoder_tp_mode: str = "weights") -> bool:
        """Whether TP splits the tower's weights (vLLM's rule; see the module docstring)."""
        return tp > 1 and encoder_tp_mode == "weights" and self.heads % tp == 0


def qwen_smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers' Qwen2-VL smart_resize: sides multiples of factor, area within the bounds.

    As transformers 5.17.0 models/qwen2_vl/image_processing_qwen2_vl.py has it (vLLM's qwen2_vl.py
    _get_vision_info imports it from there): the first rounding has no max(factor, ...) floor, unlike
    qwen_vl_utils; a side under factor/2 rounds to 0, so the image goes up to min_pixels instead."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def mllama_tile_grid(width: int, height: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """transformers' get_optimal_tiled_canvas: (rows, cols) of tiles for the image. The least
    upscaling canvas when some canvas upscales, else the least downscaling; ties go to the
    smallest canvas."""
    grids = [(rows, cols) for rows in range(1, max_tiles + 1) for cols in range(1, max_tiles + 1)
             if rows * cols <= max_tiles]
    scales = {grid: min(grid[0] * tile / height, grid[1] * tile / width) for grid in grids}
    upscaling = [s for s in scales.values() if s >= 1]
    chosen = min(upscaling) if upscaling else max(scales.values())
    candidates = [grid for grid, s in scales.items() if s == chosen]
    return min(candidates, key=lambda grid: grid[0] * grid[1])


def _qwen_parameters(v: VisionTower) -> float:
    patch_embed = 3 * v.temporal_patch_size * v.patch_size ** 2 * v.hidden_size  # Conv3d, no bias
    attention = v.hidden_size * 3 * v.hidden_size + 3 * v.hidden_size + v.hidden_size ** 2 + v.hidden_size
    mlp = 3 * v.hidden_size * v.intermediate_size + 2 * v.intermediate_size + v.hidden_size  # gated, biased
    block = attention + mlp + 2 * v.hidden_size  # two RMSNorms
    merged = v.hidden_size * v.merge_size ** 2
    merger = v.hidden_size + merged * merged + merged + merged * v.output_size + v.output_size
    return patch_embed + v.layers * block + merger


def _vit_block(hidden: int, intermediate: int) -> float:
    """A pre-norm ViT block with biased q/k/v/o, a two-layer MLP and two LayerNorms."""
    return 4 * (hidden * hidden + hidden) + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden


def _gemma3_parameters(v: VisionTower) -> float:
    positions = (v.image_size // v.patch_size) ** 2
    siglip = (3 * v.patch_size ** 2 * v.hidden_size + v.hidden_size + positions * v.hidden_size
              + v.layers * _vit_block(v.hidden_size, v.intermediate_size) + 2 * v.hidden_size)
    projector = v.hidden_size * v.output_size + v.hidden_size  # mm_input_projection + soft-embedding norm
    return siglip + projector


def _mllama_parameters(v: VisionTower) -> float:
    h = v.hidden_size
    positions = v.tokens_per_tile
    aspect_ratios = 9  # max_aspect_ratio_id + 1 for 4 tiles (config supported_aspect_ratios: 8)
    # unbiased q/k/v/o in the MllamaVisionAttention, biased MLP
    block = 4 * h * h + 2 * h * v.intermediate_size + v.intermediate_size + h + 4 * h
    embeddings = (3 * v.patch_size ** 2 * h + h + positions * h
                  + aspect_ratios * v.max_tiles * positions * h + 2 * aspect_ratios * v.max_tiles * h)
    projector = v.projector_input * v.output_size + v.output_size
    return embeddings + 4 * h + (v.layers + v.global_layers) * block + projector


_PARAMETER_FORMULAS = {QWEN2_5_VL: _qwen_parameters, GEMMA3: _gemma3_parameters, MLLAMA: _mllama_parameters}
