"""Image sizes from image_url content parts, with the standard library only.

A data URL is decoded as vLLM's MediaConnector does (vllm/multimodal/media/connector.py
_load_data_url: RFC 2397, base64 only) and its width and height are read from the PNG, JPEG,
GIF or WebP header; the errors are vLLM's messages. http(s) URLs are never fetched: the image
is assumed to be DEFAULT_REMOTE_SIZE (a 720p camera frame), which the simulator logs once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

DEFAULT_REMOTE_SIZE = (1280, 720)


class ImageError(ValueError):
    """An image part vLLM would refuse; str() is vLLM's message."""


@dataclass(frozen=True)
class ImageRef:
    width: int
    height: int
    digest: str  # content hash (vLLM hashes the media for its processor cache and prefix caching)
    fetched: bool  # False: an http(s) URL the simulator sized by assumption


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the file header; ImageError when it is no image format vLLM reads."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    raise ImageError("Failed to load image: cannot identify image file")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            break
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2:index + 4])[0]
        # start-of-frame markers (baseline, progressive, ...) carry the size; C4, C8, CC do not
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        index += 2 + length
    raise ImageError("Failed to load image: image file is truncated")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageError("Failed to load image: cannot identify image file")


def load_image_url(url: str) -> ImageRef:
    """The image an image_url part names, as vLLM would load it (without fetching http URLs)."""
    if url[:5].lower() == "data:":
        spec, separator, payload = url[5:].partition(",")
        if not separator:
            raise ImageError(f"Invalid data URL {url[:32]!r}: missing ',' separator.")
        _, separator, encoding = spec.rpartition(";")
        if not separator or encoding != "base64":
            raise ImageError("Only base64 data URLs are supported for now.")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise ImageError(str(exc)) from None
        width, height = image_size(data)
        if width < 1 or height < 1:
            raise ImageError(f"Failed to load image: image size {width}x{height} is empty")
        return ImageRef(width, height, hashlib.blake2b(data, digest_size=16).hexdigest(), True)
    if url.lower().startswith(("http://", "https://")):
        width, height = DEFAULT_REMOTE_SIZE
        return ImageRef(width, height, hashlib.blake2b(url.encode(), digest_size=16).hexdigest(), False)
    if url.lower().startswith("file:"):
        raise ImageError("Cannot load local files without `--allowed-local-media-path`.")
    raise ImageError("The URL must be either a HTTP, data or file URL.")
