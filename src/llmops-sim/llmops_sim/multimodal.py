"""Image inputs of chat requests: vLLM's multimodal flags, per-prompt limits, image tokens.

Tokens per image are the planner's (llmops.planner.vision: each model's processor rule), for
the vision tower the planner's catalogue gives the served model; a model it does not list as
vision-language is text-only, as vLLM would find from its architecture. The vision encoder's
own forward pass is charged to prefill as extra compute: patches x tower parameters, in
units of the language model's per-token compute (2 x parameters FLOPs a token).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from llmops.planner.vision import VisionTower
from llmops_sim.images import ImageError, ImageRef, load_image_url

log = logging.getLogger("vllm.multimodal")

VLLM_DEFAULT_LIMIT = 999  # vllm/config/multimodal.py get_limit_per_prompt: an unset modality
DEFAULT_CACHE_GB = 4.0  # vllm/config/multimodal.py mm_processor_cache_gb
PART_MODALITY = {"image_url": "image", "video_url": "video", "input_audio": "audio", "audio_url": "audio"}


class MultimodalFlagError(ValueError):
    """A multimodal flag vLLM's parser would refuse."""


@dataclass(frozen=True)
class MultimodalConfig:
    vision: VisionTower | None  # None: a text-only model
    limits: dict[str, int] = field(default_factory=dict)  # --limit-mm-per-prompt
    max_pixels: int | None = None  # --mm-processor-kwargs max_pixels
    cache_gb: float = DEFAULT_CACHE_GB  # --mm-processor-cache-gb
    language_params_b: float = 7.0
    language_shape: Any = None  # profiles.ModelShape of a catalogued vision-language model

    def allowed(self, modality: str) -> int:
        """vllm/multimodal/processing/context.py validate_num_items: the user's limit (999 when
        unset) capped by what the model supports (0 for a modality it lacks)."""
        if self.vision is None or modality not in self.vision.modalities:
            return 0
        return self.limits.get(modality, VLLM_DEFAULT_LIMIT)

    def encoder_work(self, image_tokens: int) -> float:
        """The encoder's forward pass for one image, in language-model token equivalents."""
        assert self.vision is not None
        return self.vision.encoder_patches(image_tokens) * self.vision.parameters / (self.language_params_b * 1e9)

    def item_bytes(self, image_tokens: int) -> int:
        """Processed pixel values of one image (float32 patches), what the processor cache holds."""
        assert self.vision is not None
        v = self.vision
        return v.encoder_patches(image_tokens) * 3 * v.patch_size ** 2 * v.temporal_patch_size * 4


def _json_flag(flag: str, raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MultimodalFlagError(f"vllm serve: error: argument {flag}: invalid loads value: {raw!r} ({exc})") from None
    if not isinstance(value, dict):
        raise MultimodalFlagError(f"vllm serve: error: argument {flag}: expected a JSON object, got {raw!r}")
    return value


def parse_limits(raw: str | None) -> dict[str, int]:
    """--limit-mm-per-prompt: {"image": 4} or {"image": {"count": 4, ...}} (0.33's option form)."""
    limits: dict[str, int] = {}
    for modality, value in _json_flag("--limit-mm-per-prompt", raw).items():
        count = value.get("count") if isinstance(value, dict) else value
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MultimodalFlagError(f"vllm serve: error: argument --limit-mm-per-prompt: the {modality} count "
                                      f"must be an integer >= 0, got {count!r}")
        limits[modality] = count
    return limits


def build(vision: VisionTower | None, limit_raw: str | None, kwargs_raw: str | None, cache_raw: str | None,
          language_params_b: float) -> MultimodalConfig:
    kwargs = _json_flag("--mm-processor-kwargs", kwargs_raw)
    max_pixels = kwargs.get("max_pixels")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise MultimodalFlagError(f"--mm-processor-kwargs: max_pixels must be a positive integer, got {max_pixels!r}")
    try:
        cache_gb = float(cache_raw) if cache_raw is not None else DEFAULT_CACHE_GB
    except ValueError:
        raise MultimodalFlagError(f"vllm serve: error: argument --mm-processor-cache-gb: invalid float value: "
                                  f"{cache_raw!r}") from None
    if cache_gb < 0:
        raise MultimodalFlagError("--mm-processor-cache-gb must be >= 0 (0 disables the cache)")
    return MultimodalConfig(vision, parse_limits(limit_raw), max_pixels, cache_gb, language_params_b)


@dataclass(frozen=True)
class ImageInput:
    ref: ImageRef
    tokens: int
    encoder_work: float
    nbytes: int

    def token_ids(self, vocab: int) -> list[int]:
        """Ids derived from the image's content, so equal images share prefix-cache blocks (vLLM
        puts the media hash into the block hashes) and different images do not."""
        seed = self.ref.digest.encode()
        return [zlib.crc32(i.to_bytes(4, "little"), zlib.crc32(seed)) % vocab for i in range(self.tokens)]


class RequestError(ValueError):
    """A request vLLM refuses: the message, and for 0.33's VLLMValidationError its parameter."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class MediaReader:
    """Walks a chat request's content parts in order, as vLLM's item tracker does: each item is
    counted against its modality's limit before it is loaded."""

    def __init__(self, config: MultimodalConfig, model_name: str, on_remote: Callable[[str], None] | None = None):
        self.config = config
        self.model_name = model_name
        self.on_remote = on_remote
        self.counts: dict[str, int] = {}
        self.images: list[ImageInput] = []

    def part_token_ids(self, part: dict, vocab: int) -> list[int]:
        kind = part.get("type")
        modality = PART_MODALITY.get(kind) if isinstance(kind, str) else None
        if modality is None:
            raise RequestError(f"Unknown part type: {kind}")
        if self.config.vision is None:
            # vllm/multimodal/registry.py create_processor
            raise RequestError(f"{self.model_name} is not a multimodal model")
        count = self.counts.get(modality, 0) + 1
        limit = self.config.allowed(modality)
        if count > limit:
            raise RequestError(f"At most {limit} {modality}(s) may be provided in one prompt.", modality)
        self.counts[modality] = count
        if modality != "image":
            raise RequestError(f"the simulator does not emulate {modality} inputs (only image_url parts)")
        return self._image(part).token_ids(vocab)

    def _image(self, part: dict) -> ImageInput:
        spec = part.get("image_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str) or not url:
            raise RequestError("image_url part needs an image_url.url (a data: or http(s) URL)")
        try:
            ref = load_image_url(url)
        except ImageError as exc:
            raise RequestError(str(exc)) from None
        if not ref.fetched and self.on_remote:
            self.on_remote(url)
        vision = self.config.vision
        assert vision is not None
        try:
            tokens = vision.image_tokens(ref.width, ref.height, self.config.max_pixels)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        image = ImageInput(ref, tokens, self.config.encoder_work(tokens), self.config.item_bytes(tokens))
        self.images.append(image)
        return image


class ProcessorCache:
    """vLLM's LRU multi-modal processor cache (vllm/multimodal/cache/lru.py), by content hash and
    bytes, for vllm:mm_cache_queries / vllm:mm_cache_hits; 0 GiB disables it (no queries)."""

    def __init__(self, capacity_gb: float):
        self.capacity = int(capacity_gb * 2**30)
        self._items: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0

    def lookup(self, images: list[ImageInput]) -> tuple[int, int]:
        """(queries, hits) for a request's images, inserting the misses."""
        if self.capacity <= 0:
            return 0, 0
        hits = 0
        for image in images:
            key = image.ref.digest
            if key in self._items:
                hits += 1
                self._items.move_to_end(key)
                continue
            if image.nbytes > self.capacity:
                continue  # served uncached, as vLLM does with an oversized item
            self._items[key] = image.nbytes
            self._bytes += image.nbytes
            while self._bytes > self.capacity:
                _, size = self._items.popitem(last=False)
                self._bytes -= size
        return len(images), hits
