"""Small generated PNGs for image requests: one flat colour per (size, variant), so equal
variants are byte-equal (vLLM's processor cache and prefix cache see a repeat) and different
variants are not. Flat rows compress to a few hundred bytes even at 1920x1080."""

from __future__ import annotations

import base64
import functools
import struct
import zlib


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
