"""Where weights come from: the Hugging Face Hub, or (sandbox, tests) a simulated hub.

A fetcher lists a revision's files with what the source says about them (size, SHA-256 for
LFS files, git blob id for small ones) and downloads named files into a directory. The
stager decides what to fetch and checks every byte against that listing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Protocol, Sequence

from llmops.stage.integrity import Expected


class FetchError(Exception):
    """The source could not be listed or a file could not be downloaded."""


@dataclass(frozen=True)
class Snapshot:
    commit: str                    # the revision resolved to an immutable id
    files: tuple[Expected, ...]


class Fetcher(Protocol):
    def snapshot(self, repo: str, revision: str) -> Snapshot: ...

    def download(self, repo: str, commit: str, name: str, directory: Path) -> None: ...


def wanted(files: Sequence[Expected], ignore_patterns: Sequence[str]) -> list[Expected]:
    return [f for f in files if not any(fnmatch.fnmatch(f.name, p) for p in ignore_patterns)]


def _client_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub lets through when the connection itself fails: OSErrors with
    requests (huggingface_hub < 1.0), httpx(2).HTTPError since, which are not OSErrors."""
    errors: list[type[Exception]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


class HubFetcher:
    """huggingface_hub against the Hub (or $HF_ENDPOINT, e.g. a mirror); $HF_TOKEN for gated repos."""

    def __init__(self, token: Optional[str] = None, endpoint: Optional[str] = None):
        try:
            import huggingface_hub  # noqa: F401 - optional: only stager images need it
        except ImportError:
            raise FetchError("huggingface_hub is not installed; install llmops[stage] "
                             "(the operator image has it)") from None
        self.token = token
        self.endpoint = endpoint

    def snapshot(self, repo: str, revision: str) -> Snapshot:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        try:
            info = HfApi(endpoint=self.endpoint, token=self.token).model_info(
                repo, revision=revision, files_metadata=True)
        except HfHubHTTPError as exc:
            raise FetchError(f"cannot list {repo}@{revision}: {exc}") from None
        except _client_errors() as exc:
            raise FetchError(f"cannot reach the hub for {repo}@{revision}: {exc}") from None
        files = tuple(
            Expected(
                name=s.rfilename,
                size=s.size,
                sha256=s.lfs.sha256 if s.lfs else None,
                git_sha1=None if s.lfs else s.blob_id,
            )
            for s in info.siblings or ()
        )
        return Snapshot(commit=info.sha or revision, files=files)

    def download(self, repo: str, commit: str, name: str, directory: Path) -> None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            hf_hub_download(repo, name, revision=commit, local_dir=directory, token=self.token,
                            endpoint=self.endpoint)
        except HfHubHTTPError as exc:
            raise FetchError(f"cannot download {repo}/{name}: {exc}") from None
        except _client_errors() as exc:
            raise FetchError(f"cannot download {repo}/{name}: {exc}") from None


# --- the simulated hub (no internet in the sandbox) ------------------------------------

SIM_ENV_DOC = {
    "LLMOPS_SIM_STAGE_BYTES": "total size of the simulated weight files (default 8388608)",
    "LLMOPS_SIM_STAGE_SECONDS": "how long the simulated download takes (default 2)",
    "LLMOPS_SIM_STAGE_CORRUPT": "fnmatch pattern of files whose download arrives corrupted (tests)",
}


@dataclass(frozen=True)
class SimulatedHub:
    """A deterministic repo per (repo, revision): config, tokenizer, sharded safetensors, and
    an `original/` checkpoint that the default ignore patterns skip."""

    total_bytes: int = 8 * 1024 * 1024
    seconds: float = 2.0
    corrupt: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SimulatedHub":
        try:
            return cls(
                total_bytes=int(env.get("LLMOPS_SIM_STAGE_BYTES") or cls.total_bytes),
                seconds=float(env.get("LLMOPS_SIM_STAGE_SECONDS") or cls.seconds),
                corrupt=env.get("LLMOPS_SIM_STAGE_CORRUPT", ""),
            )
        except ValueError as exc:
            raise FetchError(f"simulated hub settings: {exc}; fix: {', '.join(SIM_ENV_DOC)} take numbers") from None

    def _layout(self, repo: str) -> dict[str, int]:
        shards = 4
        shard = max(1, self.total_bytes // shards)
        names = {f"model-{i:05d}-of-{shards:05d}.safetensors": shard for i in range(1, shards + 1)}
        return {"config.json": 0, "tokenizer.json": 4096, **names, "original/consolidated.00.pth": shard}

    def content(self, repo: str, commit: str, name: str) -> bytes:
        if name == "config.json":
            return json.dumps({"_name_or_path": repo, "architectures": ["LlamaForCausalLM"]}, indent=2).encode()
        seed = int.from_bytes(hashlib.sha256(f"{repo}@{commit}/{name}".encode()).digest()[:8], "big")
        rng, size, chunk = random.Random(seed), self._layout(repo)[name], 64 * 1024 * 1024
        return b"".join(rng.randbytes(min(chunk, size - at)) for at in range(0, size, chunk))

    def commit(self, repo: str, revision: str) -> str:
        if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
            return revision
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


class SimulatedFetcher:
    def __init__(self, hub: SimulatedHub):
        self.hub = hub

    def snapshot(self, repo: str, revision: str) -> Snapshot:
        if revision.startswith("missing"):   # lets tests exercise a revision the hub lacks
            raise FetchError(f"cannot list {repo}@{revision}: 404 Revision Not Found (simulated hub)")
        commit = self.hub.commit(repo, revision)
        files = []
        for name in self.hub._layout(repo):
            data = self.hub.content(repo, commit, name)
            lfs = name.endswith((".safetensors", ".pth"))
            files.append(Expected(
                name=name, size=len(data),
                sha256=hashlib.sha256(data).hexdigest() if lfs else None,
                git_sha1=None if lfs else hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest(),
            ))
        return Snapshot(commit=commit, files=tuple(files))

    def download(self, repo: str, commit: str, name: str, directory: Path) -> None:
        data = self.hub.content(repo, commit, name)
        if self.hub.corrupt and fnmatch.fnmatch(name, self.hub.corrupt) and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        # Spread the simulated download time over the bytes, like a steady link.
        share = len(data) / max(1, sum(self.hub._layout(repo).values()))
        time.sleep(self.hub.seconds * share)
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".incomplete")
        tmp.write_bytes(data)
        os.replace(tmp, path)
