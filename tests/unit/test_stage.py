"""Model staging on one node: download, integrity against the source, resume, self-repair."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from llmops.stage import stager as stager_module
from llmops.stage.fetchers import SimulatedFetcher, SimulatedHub
from llmops.stage.integrity import parse_sums, verify_sums
from llmops.stage.layout import MARKER_FILE, SUMS_FILE, cache_key
from llmops.stage.leases import lease_path, remove_unused, renew, unused_copies
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


# -- node disk: leases, cleanup and free space ---------------------------------------------

HOUR = 3600.0


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_copy_is_removed_only_when_every_lease_is_older_than_the_retention(tmp_path):
    old = StageRequest(REPO, "v1", tmp_path, IGNORE, owner="ml/chat")
    stage(old, fetcher(), log=lambda m: None)
    shared = StageRequest(REPO, "v1", tmp_path, IGNORE, owner="ml/batch")
    stage(shared, fetcher(), log=lambda m: None)
    age(lease_path(old.directory, "ml/chat"), 30 * HOUR)   # ml/chat moved to another revision
    assert unused_copies(tmp_path, 24 * HOUR) == []         # ml/batch still uses v1
    age(lease_path(old.directory, "ml/batch"), 25 * HOUR)
    assert unused_copies(tmp_path, 24 * HOUR) == [old.directory]
    logs: list[str] = []
    assert remove_unused(tmp_path, 24 * HOUR, logs.append) > 0
    assert not old.directory.exists() and not lease_path(old.directory, "ml/chat").parent.exists()
    assert "unused for over 24 h" in logs[0]


def test_copies_without_leases_or_being_staged_are_never_removed(tmp_path):
    manual = tmp_path / "by-hand--model--main"
    manual.mkdir()
    (manual / "config.json").write_text("{}")
    busy = StageRequest(REPO, "v2", tmp_path, IGNORE, owner="ml/chat")
    renew(busy.directory, "ml/chat")
    age(lease_path(busy.directory, "ml/chat"), 48 * HOUR)
    with open(busy.directory.with_name(busy.directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # a stager is staging it right now
        assert remove_unused(tmp_path, HOUR, lambda m: None) == 0
    assert manual.exists() and lease_path(busy.directory, "ml/chat").exists()


class SmallDisk:
    """shutil.disk_usage for a disk of `capacity` bytes holding what is under `root`."""

    def __init__(self, root: Path, capacity: int):
        self.root, self.capacity = root, capacity

    def __call__(self, path):
        used = sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())
        return shutil._ntuple_diskusage(self.capacity, used, self.capacity - used)


def test_a_download_the_disk_cannot_hold_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(stager_module, "RESERVE_BYTES", 10_000)
    monkeypatch.setattr(stager_module.shutil, "disk_usage", SmallDisk(tmp_path, 50_000))
    with pytest.raises(StageError, match=r"not enough disk for .*free space on the node.*prestage.hostPath"):
        stage(request(tmp_path), fetcher(), log=lambda m: None)
    assert not request(tmp_path).directory.exists()


def test_copies_unused_past_retention_make_room_for_a_new_revision(tmp_path, monkeypatch):
    old = StageRequest(REPO, "v1", tmp_path, IGNORE, owner="edge/llama")
    stage(old, fetcher(), log=lambda m: None)   # 64 KiB of shards
    age(lease_path(old.directory, "edge/llama"), 30 * HOUR)
    monkeypatch.setattr(stager_module, "RESERVE_BYTES", 10_000)
    monkeypatch.setattr(stager_module.shutil, "disk_usage", SmallDisk(tmp_path, 120_000))
    new = StageRequest(REPO, "v2", tmp_path, IGNORE, owner="edge/llama", retain_unused_seconds=24 * HOUR)
    stage(new, fetcher(), log=lambda m: None)
    assert not old.directory.exists() and verify_sums(new.directory) == []


def test_a_long_download_reports_progress_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(stager_module, "PROGRESS_SECONDS", 0.1)
    logs: list[str] = []
    stage(request(tmp_path), SimulatedFetcher(SimulatedHub(total_bytes=64 * 1024, seconds=1.0)), log=logs.append)
    ticks = [m for m in logs if m.startswith("progress: ")]
    assert len(ticks) >= 3 and all(" of 68.1 KiB on disk (" in m for m in ticks), logs
    scale = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2}
    on_disk = [float(m.split()[1]) * scale[m.split()[2]] for m in ticks]
    assert on_disk == sorted(on_disk) and on_disk[-1] > on_disk[0], "progress must grow while it downloads"
