"""Images for chat requests: small generated PNGs, one flat colour per (size, variant), so
equal variants are byte-equal (vLLM's processor cache and prefix cache see a repeat) and
different variants are not (flat rows compress to a few KiB even at 1920x1080); and the mix
of sizes and counts a load scenario sends."""

from __future__ import annotations

import base64
import functools
import random
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Mapping


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=64)
def png_bytes(width: int, height: int, variant: int = 0) -> bytes:
    """An 8-bit RGB PNG of width x height in a colour chosen by variant."""
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} must be at least 1x1")
    colour = bytes(((variant * 73 + 40) % 256, (variant * 151 + 90) % 256, (variant * 199 + 160) % 256))
    row = b"\x00" + colour * width  # filter type 0, then the pixels
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


@functools.lru_cache(maxsize=64)
def png_data_url(width: int, height: int, variant: int = 0) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height, variant)).decode()


def image_part(width: int, height: int, variant: int = 0) -> dict:
    """An OpenAI chat content part carrying the image."""
    return {"type": "image_url", "image_url": {"url": png_data_url(width, height, variant)}}


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*(?::\s*(\d+(?:\.\d+)?))?\s*$")
DEFAULT_SIZES = ("640x480", "1280x720", "1920x1080")


class ImageMixError(ValueError):
    """An unusable image mix; the message names the field and the fix."""


@dataclass(frozen=True)
class ImageMix:
    """Images each chat request carries: `per_request` of them, sizes drawn from `sizes`
    ((width, height, weight)), and `distinct` different images per size, so repeats exercise
    the server's multimodal cache (1: every request sends the same images)."""

    per_request: int = 1
    sizes: tuple[tuple[int, int, float], ...] = ((640, 480, 1.0), (1280, 720, 1.0), (1920, 1080, 1.0))
    distinct: int = 16

    def parts(self, sequence: int) -> list[dict]:
        """The image parts of request `sequence` (deterministic: a run is reproducible)."""
        rng = random.Random(f"images:{sequence}")
        weights = [w for _, _, w in self.sizes]
        chosen = rng.choices(self.sizes, weights=weights, k=self.per_request)
        return [image_part(width, height, rng.randrange(self.distinct)) for width, height, _ in chosen]

    def describe(self) -> str:
        sizes = ", ".join(f"{w}x{h}" + (f":{weight:g}" if weight != 1 else "") for w, h, weight in self.sizes)
        return f"{self.per_request} image(s) per request from {sizes}, {self.distinct} distinct per size"


def parse_sizes(values: Any, where: str) -> tuple[tuple[int, int, float], ...]:
    """'640x480', '1280x720:2' (weight 2), as a list or comma-separated."""
    items = values.split(",") if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not items:
        raise ImageMixError(f"{where}: give sizes like 640x480,1280x720:2 (WIDTHxHEIGHT[:WEIGHT])")
    sizes = []
    for item in items:
        match = _SIZE.match(str(item))
        if not match or int(match[1]) < 1 or int(match[2]) < 1 or (match[3] is not None and float(match[3]) <= 0):
            raise ImageMixError(f"{where}: {item!r} is not WIDTHxHEIGHT[:WEIGHT]; fix: write e.g. 1280x720 or "
                                "1280x720:2 (positive sizes and weight)")
        sizes.append((int(match[1]), int(match[2]), float(match[3] or 1)))
    return tuple(sizes)


def parse_image_mix(data: Any, where: str = "scenario.images") -> ImageMix:
    """YAML: {per_request: 2, sizes: [640x480, 1280x720:2], distinct: 8}; a bare integer is per_request."""
    if isinstance(data, int) and not isinstance(data, bool):
        data = {"per_request": data}
    if not isinstance(data, Mapping):
        raise ImageMixError(f"{where}: must be a mapping like {{per_request: 2, sizes: [640x480, 1280x720]}}")
    unknown = set(data) - {"per_request", "sizes", "distinct"}
    if unknown:
        raise ImageMixError(f"{where}: unknown keys {sorted(unknown)}; allowed: distinct, per_request, sizes")
    mix = {}
    for key in ("per_request", "distinct"):
        value = data.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImageMixError(f"{where}.{key}: must be a positive integer, got {value!r}")
            mix[key] = value
    if "sizes" in data:
        mix["sizes"] = parse_sizes(data["sizes"], f"{where}.sizes")
    return ImageMix(**mix)
