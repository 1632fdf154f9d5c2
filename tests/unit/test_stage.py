"""Model staging on one node: download, integrity against the source, resume, self-repair."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from llmops.stage.fetchers import SimulatedFetcher, SimulatedHub
from llmops.stage.integrity import parse_sums, verify_sums
from llmops.stage.layout import MARKER_FILE, SUMS_FILE, cache_key
from llmops.stage.stager import StageError, StageRequest, stage, still_staged, wait_for_stage

REPO = "meta-llama/Llama-3.1-8B-Instruct"
IGNORE = ("original/*",)


def request(tmp_path: Path, revision: str = "main") -> StageRequest:
    return StageRequest(repo=REPO, revision=revision, root=tmp_path, ignore_patterns=IGNORE)


def fetcher(**hub) -> SimulatedFetcher:
    return SimulatedFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0, **hub))


class CountingFetcher(SimulatedFetcher):
    def __init__(self, hub):
        super().__init__(hub)
        self.downloads: list[str] = []

    def download(self, repo, commit, name, directory):
        self.downloads.append(name)
        super().download(repo, commit, name, directory)


def test_cache_key_keeps_the_repo_name_readable_and_flat():
    assert cache_key("meta-llama/Llama-3.1-8B-Instruct", None) == "meta-llama--Llama-3.1-8B-Instruct--main"
    assert cache_key("org/m", "refs/pr/1") == "org--m--refs--pr--1"
    assert "/" not in cache_key("a/b", "x y/z")


def test_stage_writes_checked_files_sums_and_marker_skipping_ignored(tmp_path):
    marker = stage(request(tmp_path), fetcher(), log=lambda m: None)
    directory = request(tmp_path).directory
    names = sorted(p.name for p in directory.iterdir())
    assert "original" not in names and "config.json" in names
    assert [n for n in names if n.endswith(".safetensors")] == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    sums = dict(parse_sums((directory / SUMS_FILE).read_text()))
    assert set(sums) == {n for n in names if n not in (SUMS_FILE, MARKER_FILE)}
    assert json.loads((directory / MARKER_FILE).read_text()) == marker
    assert marker["source"] == REPO and marker["files"] == 6 and len(marker["commit"]) == 40
    assert verify_sums(directory) == []
    assert not directory.with_name(directory.name + ".partial").exists()


def test_a_second_run_downloads_nothing(tmp_path):
    stage(request(tmp_path), fetcher(), log=lambda m: None)
    again = CountingFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0))
    stage(request(tmp_path), again, log=lambda m: None)
    assert again.downloads == []


def test_a_corrupted_download_is_refused_removed_and_nothing_is_published(tmp_path):
    with pytest.raises(StageError, match=r"integrity check failed: model-00002-of-00004.safetensors: sha256 .* the source has"):
        stage(request(tmp_path), fetcher(corrupt="model-00002-*"), log=lambda m: None)
    directory = request(tmp_path).directory
    assert not directory.exists(), "a model with a bad file must never appear complete"
    partial = directory.with_name(directory.name + ".partial")
    assert (partial / "model-00001-of-00004.safetensors").exists()
    assert not (partial / "model-00002-of-00004.safetensors").exists()
    # The retry (the pod restarting) keeps what was good and fetches only the rest.
    retry = CountingFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0))
    stage(request(tmp_path), retry, log=lambda m: None)
    assert retry.downloads == ["model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
                               "model-00004-of-00004.safetensors"]
    assert verify_sums(directory) == []


def test_waiting_pod_verifies_and_a_damaged_copy_is_repaired_by_the_stager(tmp_path):
    req = request(tmp_path)
    stage(req, fetcher(), log=lambda m: None)
    wait_for_stage(req.directory, timeout=1, verify=True, log=lambda m: None)
    victim = req.directory / "model-00003-of-00004.safetensors"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01   # same size: only the hash can tell
    victim.write_bytes(bytes(data))
    assert still_staged(req), "the holder's cheap check cannot see a flipped bit; the waiting pod must"
    with pytest.raises(StageError, match=r"damaged: model-00003-of-00004.safetensors: sha256 .*SHA256SUMS has"):
        wait_for_stage(req.directory, timeout=1, verify=True, log=lambda m: None, node="edge-a-1")
    assert not still_staged(req), "the marker must be dropped so the stager notices"
    repair = CountingFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0))
    stage(req, repair, log=lambda m: None)
    assert repair.downloads == ["model-00003-of-00004.safetensors"]
    wait_for_stage(req.directory, timeout=1, verify=True, log=lambda m: None)


def test_waiting_times_out_with_the_node_and_the_fix(tmp_path):
    with pytest.raises(StageError, match=r"not staged on node edge-b-2 within 0.2 s; check .*model-stage DaemonSet pod"):
        wait_for_stage(tmp_path / "absent", timeout=0.2, verify=True, log=lambda m: None, poll=0.05, node="edge-b-2")


def test_waiting_returns_once_the_stager_publishes(tmp_path):
    req = request(tmp_path)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (wait_for_stage(req.directory, 10, True, lambda m: None, poll=0.02),
                                              done.set()))
    waiter.start()
    assert not done.wait(0.2)
    stage(req, fetcher(), log=lambda m: None)
    waiter.join(10)
    assert done.is_set()


def test_two_stagers_on_one_node_share_the_work(tmp_path):
    slow = CountingFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0.3))
    other = CountingFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=0.3))
    threads = [threading.Thread(target=stage, args=(request(tmp_path), f, lambda m: None)) for f in (slow, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted([len(slow.downloads), len(other.downloads)]) == [0, 6]


def test_everything_ignored_is_an_error_naming_the_field(tmp_path):
    req = StageRequest(repo=REPO, revision="main", root=tmp_path, ignore_patterns=("*",))
    with pytest.raises(StageError, match="spec.model.prestage.ignorePatterns"):
        stage(req, fetcher(), log=lambda m: None)


def test_malformed_sums_are_reported_not_crashed_on(tmp_path):
    (tmp_path / SUMS_FILE).write_text("not a sums line\n")
    assert verify_sums(tmp_path) == [f"{SUMS_FILE} line 1 is not '<sha256>  <file>'"]
    assert verify_sums(tmp_path / "nothing") == [f"{SUMS_FILE} is missing"]
