"""The simulator's image inputs: sizes from file headers, vLLM's limits and errors, the
processor cache, and the encoder's compute charged to prefill."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from llmops_load.images import png_bytes, png_data_url
from llmops.planner.models import lookup_model
from llmops_sim import tokens as tok
from llmops_sim.engine import Engine, EngineRequest
from llmops_sim.images import ImageError, image_size, load_image_url
from llmops_sim.multimodal import MediaReader, MultimodalConfig, ProcessorCache, RequestError, build

QWEN_VL = lookup_model("Qwen/Qwen2.5-VL-7B-Instruct").vision
GEMMA = lookup_model("google/gemma-3-4b-it").vision


def test_generated_png_is_a_valid_png_of_that_size():
    data = png_bytes(300, 200, 2)
    assert image_size(data) == (300, 200)
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    pixels = zlib.decompress(data[41:41 + length])
    assert len(pixels) == 200 * (1 + 300 * 3) and zlib.crc32(data[37:41 + length]) == struct.unpack(
        ">I", data[41 + length:45 + length])[0]
    assert png_bytes(300, 200, 2) != png_bytes(300, 200, 3)


def test_sizes_from_jpeg_gif_and_webp_headers():
    # JPEG: SOI, an APP0 segment, then SOF0 with height 480, width 640
    jpeg = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9 + \
        b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 480, 640) + b"\x00" * 12
    assert image_size(jpeg) == (640, 480)
    assert image_size(b"GIF89a" + struct.pack("<HH", 32, 16) + b"\x00" * 4) == (32, 16)
    webp = b"RIFF" + b"\x00" * 4 + b"WEBPVP8X" + b"\x00" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little")
    assert image_size(webp) == (100, 50)
    with pytest.raises(ImageError, match="cannot identify image file"):
        image_size(b"hello world")


def test_data_urls_are_decoded_and_http_urls_are_not_fetched():
    ref = load_image_url(png_data_url(64, 32))
    assert (ref.width, ref.height, ref.fetched) == (64, 32, True)
    assert load_image_url(png_data_url(64, 32)).digest == ref.digest != load_image_url(png_data_url(64, 32, 1)).digest
    remote = load_image_url("https://cams.example/1.jpg")
    assert (remote.width, remote.height, remote.fetched) == (1280, 720, False)
    with pytest.raises(ImageError, match="Incorrect padding|Only base64 data characters"):
        load_image_url("data:image/png;base64," + base64.b64encode(b"x").decode()[:-1])
    with pytest.raises(ImageError, match="--allowed-local-media-path"):
        load_image_url("file:///etc/passwd")


def part(width, height, variant=0):
    return {"type": "image_url", "image_url": {"url": png_data_url(width, height, variant)}}


def read(config, *parts):
    reader = MediaReader(config, "m")
    ids = tok.chat_token_ids([{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}],
                             lambda p: reader.part_token_ids(p, tok.VOCAB_SIZE))
    return reader, ids


def test_images_become_their_processor_tokens_in_place():
    config = build(QWEN_VL, None, None, None, 7.6)
    reader, ids = read(config, part(1280, 720))
    text_only = tok.chat_token_ids([{"role": "user", "content": "look"}])
    assert len(ids) == len(text_only) + 1196 and [i.tokens for i in reader.images] == [1196]
    # equal images give equal ids (prefix caching shares them), different ones do not
    assert read(config, part(1280, 720))[1] == ids != read(config, part(1280, 720, 1))[1]


def test_limits_as_vllm_validates_them():
    limited = build(QWEN_VL, '{"image": {"count": 1}}', None, None, 7.6)
    with pytest.raises(RequestError, match=r"^At most 1 image\(s\) may be provided in one prompt\.$") as caught:
        read(limited, part(64, 64), part(64, 64, 1))
    assert caught.value.parameter == "image"
    # Gemma 3 supports no video: its limit is 0 whatever the flag says
    gemma = build(GEMMA, '{"video": 3}', None, None, 3.9)
    video = {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}
    with pytest.raises(RequestError, match=r"At most 0 video\(s\)"):
        read(gemma, video)
    with pytest.raises(RequestError, match="is not a multimodal model"):
        read(MultimodalConfig(None), part(8, 8))


@pytest.mark.parametrize("limit, kwargs, cache, message", [
    ("{image: 2}", None, None, "argument --limit-mm-per-prompt: invalid loads value"),
    ('{"image": -1}', None, None, "count must be an integer >= 0"),
    (None, '{"max_pixels": 0}', None, "max_pixels must be a positive integer"),
    (None, None, "lots", "argument --mm-processor-cache-gb: invalid float value"),
])
def test_bad_multimodal_flags_name_the_flag(limit, kwargs, cache, message):
    with pytest.raises(ValueError, match=message):
        build(QWEN_VL, limit, kwargs, cache, 7.6)


def test_processor_cache_counts_queries_and_hits_and_evicts_by_bytes():
    config = build(QWEN_VL, None, None, None, 7.6)
    first, _ = read(config, part(448, 448), part(448, 448, 1))
    cache = ProcessorCache(first.images[0].nbytes * 1.5 / 2**30)  # room for one of them
    assert cache.lookup(first.images) == (2, 0)
    assert cache.lookup(first.images[1:]) == (1, 1)
    assert cache.lookup(first.images[:1]) == (1, 0)  # evicted by the second
    assert ProcessorCache(0).lookup(first.images) == (0, 0)


def test_encoder_work_runs_once_with_the_first_prefill_step():
    config = build(QWEN_VL, None, None, None, 7.6)
    reader, _ = read(config, part(1280, 720))
    work = reader.images[0].encoder_work
    # 4784 patches through a 0.677B tower, in units of a 7.6B model's token
    assert work == pytest.approx(4784 * QWEN_VL.parameters / 7.6e9)
    request = EngineRequest("r", 1300, 4, "length", encoder_work=work)
    plain = EngineRequest("t", 1300, 4, "length")
    assert Engine.take_encoder_work([(request, 1300), (plain, 1300)]) == work
    assert Engine.take_encoder_work([(request, 1)]) == 0.0


def test_the_simulator_reads_the_multimodal_flags_and_refuses_bad_ones():
    from llmops_sim.config import ConfigError, build_config

    config = build_config(["Qwen/Qwen2.5-VL-3B-Instruct", "--limit-mm-per-prompt", '{"image": 2}',
                           "--mm-processor-kwargs", '{"max_pixels": 1003520}', "--mm-processor-cache-gb", "1"], {})
    mm = config.multimodal
    assert (mm.vision.family, mm.allowed("image"), mm.allowed("video"), mm.max_pixels, mm.cache_gb) == (
        "qwen2.5-vl", 2, 999, 1003520, 1.0)
    assert build_config(["Qwen/Qwen2.5-0.5B-Instruct"], {}).multimodal.vision is None
    with pytest.raises(ConfigError, match="argument --limit-mm-per-prompt"):
        build_config(["Qwen/Qwen2.5-VL-3B-Instruct", "--limit-mm-per-prompt", "image=2"], {})


def test_vlm_kv_per_token_is_the_catalogue_shape_and_text_models_keep_their_size_class():
    from llmops.planner.memory import kv_bytes_per_token
    from llmops_sim import profiles as prof
    from llmops_sim.config import build_config

    vlm = build_config(["Qwen/Qwen2.5-VL-7B-Instruct"], {})
    assert vlm.kv_bytes_per_token == kv_bytes_per_token(lookup_model("Qwen/Qwen2.5-VL-7B-Instruct"), 1, 1, 2)
    text = build_config(["Qwen/Qwen2.5-7B-Instruct"], {})
    assert text.shape == prof.shape_for(7.0)
