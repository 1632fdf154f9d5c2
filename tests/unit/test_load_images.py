"""Image mixes for load scenarios: parsing with field-named errors, deterministic parts, and
chat bodies that carry them."""

from __future__ import annotations

import pytest

from llmops_load import scenario as sc
from llmops_load.client import RequestSpec
from llmops_load.images import ImageMix, ImageMixError, parse_image_mix, parse_sizes
from llmops_sim.images import load_image_url


def test_sizes_with_weights():
    assert parse_sizes("640x480, 1280x720:2", "x") == ((640, 480, 1.0), (1280, 720, 2.0))
    for bad in ("640", "0x480", "640x480:0", "axb"):
        with pytest.raises(ImageMixError, match=r"scenario.images.sizes: .* WIDTHxHEIGHT"):
            parse_image_mix({"sizes": [bad]})


def test_mix_from_yaml_and_its_errors():
    mix = parse_image_mix({"per_request": 3, "sizes": ["320x240"], "distinct": 2})
    assert mix == ImageMix(3, ((320, 240, 1.0),), 2)
    assert parse_image_mix(2).per_request == 2
    with pytest.raises(ImageMixError, match=r"scenario.images.per_request: must be a positive integer"):
        parse_image_mix({"per_request": 0})
    with pytest.raises(ImageMixError, match="unknown keys"):
        parse_image_mix({"count": 1})


def test_parts_are_deterministic_and_follow_the_mix():
    mix = ImageMix(per_request=4, sizes=((64, 48, 1.0), (32, 32, 3.0)), distinct=2)
    parts = mix.parts(7)
    assert parts == mix.parts(7) and len(parts) == 4
    sizes = {(r.width, r.height) for r in (load_image_url(p["image_url"]["url"]) for i in range(40)
                                           for p in mix.parts(i))}
    assert sizes == {(64, 48), (32, 32)}
    digests = {load_image_url(p["image_url"]["url"]).digest for i in range(40) for p in mix.parts(i)}
    assert len(digests) == 4  # 2 sizes x 2 distinct images


def test_chat_body_puts_the_images_before_the_text():
    spec = RequestSpec("chat", "vl", "describe the scene", 5, 8, images=ImageMix(2, ((64, 64, 1.0),), 1))
    (message,) = spec.body(3)["messages"]
    assert [p["type"] for p in message["content"]] == ["image_url", "image_url", "text"]
    assert message["content"][-1]["text"].endswith("the scene")
    assert RequestSpec("chat", "vl", "hi", 1, 8).body(0)["messages"][0]["content"] == "hi"  # text unchanged


def test_scenario_images_need_the_chat_api():
    phases = [{"duration": "1s", "rate": 1}]
    assert sc.parse_scenario({"phases": phases, "images": {"per_request": 2}}).images.per_request == 2
    with pytest.raises(sc.ScenarioError, match="images need api: chat"):
        sc.parse_scenario({"phases": phases, "api": "completions", "images": 1})
