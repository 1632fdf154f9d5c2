"""HubFetcher + stage() with the real huggingface_hub client against a local stand-in Hub
(the test extra installs huggingface_hub; there is no internet here).

The fake Hub (stdlib http.server on 127.0.0.1, ephemeral port) speaks the part of the Hub's
HTTP protocol that `HfApi.model_info(..., files_metadata=True)` and
`hf_hub_download(..., local_dir=...)` use (huggingface_hub 2.x, httpx2-based):

* ``GET  /api/models/{repo}/revision/{rev}?blobs=true`` -> JSON with ``sha`` and ``siblings``
  (``size``, ``blobId``, and ``lfs: {sha256, size, pointerSize}`` for LFS files);
* ``HEAD /{repo}/resolve/{commit}/{file}`` -> for a git file ``200`` with ``ETag`` (git blob
  sha1), ``X-Repo-Commit`` and ``Content-Length``; for an LFS file a ``302`` to a "CDN" on
  another host (``localhost`` instead of ``127.0.0.1``, so the client does not follow it and
  drops the Authorization header) carrying ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and
  ``X-Repo-Commit``;
* ``GET`` of the resolve URL (git files) or of the CDN URL (LFS files) -> the bytes.

No ``X-Xet-Hash`` header is ever sent, so the client never tries Xet storage; Xet is also
disabled. Every request is recorded so the tests can check what the client really asked for.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from llmops.stage.fetchers import HubFetcher
from llmops.stage.integrity import parse_sums, verify_sums
from llmops.stage.layout import MARKER_FILE, SUMS_FILE
from llmops.stage.stager import StageError, StageRequest, stage, wait_for_stage

REPO = "meta-llama/Llama-3.1-8B-Instruct"
COMMIT = "0b1f5c3d8e7a6f4b2c9d0e1f2a3b4c5d6e7f8a9b"
IGNORE = ("original/*",)
TOKEN = "hf_fake_token_for_tests"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
PTH = "original/consolidated.00.pth"
WANTED = {"config.json", "tokenizer.json", *SHARDS}


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()


def _repo_files() -> dict[str, bytes]:
    rnd = random.Random(20240723)
    return {
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}, indent=2).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"vocab": {f"t{i}": i for i in range(300)}}}).encode(),
        SHARDS[0]: rnd.randbytes(48 * 1024),
        SHARDS[1]: rnd.randbytes(40 * 1024 + 7),
        PTH: rnd.randbytes(32 * 1024),
    }


def _flip(data: bytes, at: int = 100) -> bytes:
    """Same length, different bytes: only a hash can tell."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@dataclass
class Request:
    method: str
    path: str            # unquoted
    query: dict
    host: str
    authorization: Optional[str]


@dataclass
class FakeHub:
    files: dict[str, bytes] = field(default_factory=_repo_files)
    commit: str = COMMIT
    served: dict[str, bytes] = field(default_factory=dict)   # name -> bytes served instead of the real ones
    gate: Optional[str] = None          # "listing" or "files": 401 GatedRepo there without TOKEN
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        # Another origin for the same server: the client treats it like the Hub's CDN.
        return f"http://localhost:{self.port}"

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".pth"))

    def sibling(self, name: str, blobs: bool) -> dict:
        data = self.files[name]
        if not blobs:
            return {"rfilename": name}
        if not self.is_lfs(name):
            return {"rfilename": name, "size": len(data), "blobId": _git_blob_sha1(data)}
        pointer = _lfs_pointer(data)
        return {"rfilename": name, "size": len(data), "blobId": _git_blob_sha1(pointer),
                "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "pointerSize": len(pointer)}}

    def by_sha256(self, digest: str) -> Optional[str]:
        return next((n for n, d in self.files.items() if self.is_lfs(n) and hashlib.sha256(d).hexdigest() == digest), None)

    def paths(self, method: Optional[str] = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


def _handler(hub: FakeHub):
    listing = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
    resolve = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<name>.+)$")
    cdn = re.compile(r"^/cdn/(?P<sha256>[0-9a-f]{64})$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def log_message(self, *args):   # keep pytest output clean
            pass

        def do_GET(self):
            self._route(body=True)

        def do_HEAD(self):
            self._route(body=False)

        def _reply(self, status: int, headers: dict, data: bytes = b"", body: bool = True) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body and data:
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, body: bool) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
            if code in ("EntryNotFound", "GatedRepo"):
                headers["X-Repo-Commit"] = hub.commit
            self._reply(status, headers, json.dumps({"error": message}).encode(), body)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {TOKEN}"

        def _gated(self, where: str, body: bool) -> bool:
            if hub.gate == where and not self._authorized():
                self._error(401, "GatedRepo", f"Access to model {REPO} is restricted. You must have access to it "
                            "and be authenticated to access it. Please log in.", body)
                return True
            return False

        def _resolve_revision(self, rev: str, body: bool) -> bool:
            if rev in ("main", hub.commit):
                return True
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
            return False

        def _route(self, body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append(Request(self.command, path, parse_qs(url.query), self.headers.get("Host", ""),
                                        self.headers.get("Authorization")))
            if m := listing.match(path):
                if m["repo"] != REPO:
                    return self._error(404, "RepoNotFound", "Repository not found", body)
                if self._gated("listing", body) or not self._resolve_revision(m["rev"], body):
                    return
                blobs = url.query and parse_qs(url.query).get("blobs") == ["true"]
                info = {"_id": "66969c2f", "id": REPO, "modelId": REPO, "sha": hub.commit, "private": False,
                        "gated": "manual" if hub.gate else False, "tags": ["safetensors", "llama"],
                        "siblings": [hub.sibling(n, bool(blobs)) for n in hub.files]}
                return self._reply(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)
            if m := resolve.match(path):
                if m["repo"] != REPO:
                    return self._error(404, "RepoNotFound", "Repository not found", body)
                if self._gated("files", body) or not self._resolve_revision(m["rev"], body):
                    return
                name = m["name"]
                if name not in hub.files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist on \"{m['rev']}\"", body)
                data = hub.files[name]
                if hub.is_lfs(name):
                    digest = hashlib.sha256(data).hexdigest()
                    return self._reply(302, {
                        "Location": f"{hub.cdn}/cdn/{digest}",
                        "ETag": f'"{_git_blob_sha1(_lfs_pointer(data))}"',
                        "X-Repo-Commit": hub.commit,
                        "X-Linked-Etag": f'"{digest}"',
                        "X-Linked-Size": str(len(data)),
                    }, body=body)
                served = hub.served.get(name, data)
                return self._reply(200, {"ETag": f'"{_git_blob_sha1(data)}"', "X-Repo-Commit": hub.commit,
                                         "Content-Type": "application/octet-stream"}, served, body)
            if m := cdn.match(path):
                name = hub.by_sha256(m["sha256"])
                if name is None:
                    return self._reply(404, {}, b"NoSuchKey", body)
                served = hub.served.get(name, hub.files[name])
                return self._reply(200, {"ETag": f'"{m["sha256"]}"', "Content-Type": "application/octet-stream"},
                                   served, body)
            self._reply(404, {"Content-Type": "text/plain"}, b"not a route of the fake hub", body)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False   # a keep-alive connection of the client must not hang the teardown


@pytest.fixture
def hf_isolated(tmp_path, monkeypatch):
    """Nothing of the host (token, cache, proxy, offline mode, endpoint) reaches huggingface_hub.

    Environment variables are not enough: huggingface_hub.constants reads most of them at
    import time, and its shared httpx2 client reads the proxy variables when it is created.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    home = tmp_path / "hf-home"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                "HF_OIDC_RESOURCE", "HF_HUB_CACHE", "HF_TOKEN_PATH", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name, value in {
        "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        # With telemetry on, the user agent asks https://huggingface.co/api/agent-harnesses
        # (constants.ENDPOINT, not our endpoint) once per process.
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_ETAG_TIMEOUT": constants.DEFAULT_ETAG_TIMEOUT,
        "HF_HUB_DOWNLOAD_TIMEOUT": constants.DEFAULT_DOWNLOAD_TIMEOUT,
    }.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    close_session()   # the next request builds a client from the environment above
    yield home
    close_session()


@pytest.fixture
def hub(hf_isolated):
    state = FakeHub()
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        from huggingface_hub.utils import close_session

        close_session()   # drop pooled keep-alive connections before stopping the server
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(tmp_path: Path) -> StageRequest:
    return StageRequest(repo=REPO, revision="main", root=tmp_path / "models", ignore_patterns=IGNORE)


def quiet(_message: str) -> None:
    pass


def model_files(directory: Path) -> set[str]:
    """Files of the staged model, without huggingface_hub's own `.cache/` bookkeeping."""
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and p.relative_to(directory).parts[0] != ".cache"}


# --- tests ---------------------------------------------------------------------------------


def test_staging_through_the_hub_client_fetches_exactly_the_wanted_files_at_the_listed_commit(hub, tmp_path):
    req = request(tmp_path)
    marker = stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)

    directory = req.directory
    assert model_files(directory) == WANTED | {SUMS_FILE, MARKER_FILE}
    for name in WANTED:
        assert (directory / name).read_bytes() == hub.files[name]
    sums = dict(parse_sums((directory / SUMS_FILE).read_text()))
    assert sums == {n: hashlib.sha256(hub.files[n]).hexdigest() for n in WANTED}
    assert json.loads((directory / MARKER_FILE).read_text()) == marker
    assert marker["commit"] == COMMIT
    assert marker["source"] == REPO and marker["files"] == 4
    assert marker["bytes"] == sum(len(hub.files[n]) for n in WANTED)
    assert verify_sums(directory) == []
    assert not directory.with_name(directory.name + ".partial").exists()
    wait_for_stage(directory, timeout=1, verify=True, log=quiet)

    # What the real client asked for: one listing with the blob metadata, then every wanted
    # file pinned to the listed commit (never "main" again), LFS bytes from the "CDN".
    listings = [r for r in hub.requests if r.path.startswith("/api/")]
    assert [(r.method, r.path, r.query) for r in listings] == [
        ("GET", f"/api/models/{REPO}/revision/main", {"blobs": ["true"]})]
    resolved = [r for r in hub.requests if "/resolve/" in r.path]
    assert {r.path for r in resolved} == {f"/{REPO}/resolve/{COMMIT}/{n}" for n in WANTED}
    assert sorted(hub.paths("GET")) == sorted(
        [f"/api/models/{REPO}/revision/main"]
        + [f"/{REPO}/resolve/{COMMIT}/{n}" for n in ("config.json", "tokenizer.json")]
        + [f"/cdn/{hashlib.sha256(hub.files[n]).hexdigest()}" for n in SHARDS])
    assert not any(PTH in p or hashlib.sha256(hub.files[PTH]).hexdigest() in p for p in hub.paths()), \
        "ignorePatterns must keep the original/ checkpoint from being requested at all"


def test_a_second_run_asks_the_hub_nothing(hub, tmp_path):
    stage(request(tmp_path), HubFetcher(endpoint=hub.endpoint), log=quiet)
    before = len(hub.requests)
    stage(request(tmp_path), HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert len(hub.requests) == before


def test_corrupted_lfs_bytes_from_the_hub_are_refused_and_nothing_is_published(hub, tmp_path):
    victim = SHARDS[1]
    hub.served[victim] = _flip(hub.files[victim])   # same length: the client's size check passes
    req = request(tmp_path)
    with pytest.raises(StageError, match=rf"integrity check failed: {re.escape(victim)}: sha256 .* the source has"):
        stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert not req.directory.exists(), "a model with a bad file must never appear complete"
    partial = req.directory.with_name(req.directory.name + ".partial")
    assert not (partial / victim).exists(), "bytes that do not match the source must not be kept"
    assert (partial / SHARDS[0]).read_bytes() == hub.files[SHARDS[0]]

    # The Hub serves the right bytes again: the retry fetches only what is missing.
    hub.served.clear()
    hub.requests.clear()
    marker = stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert marker["commit"] == COMMIT and verify_sums(req.directory) == []
    assert [p for p in hub.paths("GET") if not p.startswith("/api/")] == \
        [f"/cdn/{hashlib.sha256(hub.files[victim]).hexdigest()}"]


def test_a_git_file_that_does_not_match_its_blob_id_is_refused(hub, tmp_path):
    original = hub.files["config.json"]
    hub.served["config.json"] = original.replace(b"4096", b"8192")   # same length, other content
    assert len(hub.served["config.json"]) == len(original)
    req = request(tmp_path)
    with pytest.raises(StageError, match=r"integrity check failed: config.json: git blob .* the source has"):
        stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert not req.directory.exists()


def test_a_short_download_is_a_stage_error_not_a_crash(hub, tmp_path):
    # The bytes served disagree with the size the Hub announced (X-Linked-Size): the client
    # itself refuses ("Consistency check failed", an OSError) before the stager looks at them.
    hub.served[SHARDS[0]] = hub.files[SHARDS[0]][:-10]
    req = request(tmp_path)
    with pytest.raises(StageError, match=rf"cannot download {re.escape(REPO)}/{re.escape(SHARDS[0])}: .*Consistency check failed"):
        stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert not req.directory.exists()


@pytest.mark.parametrize("gate, what", [("listing", f"cannot list {REPO}@main"),
                                        ("files", f"cannot download {REPO}/")])
def test_a_gated_repo_without_a_token_is_a_stage_error_naming_the_repo(hub, tmp_path, gate, what):
    hub.gate = gate
    req = request(tmp_path)
    with pytest.raises(StageError) as caught:
        stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    message = str(caught.value)
    assert message.startswith(what) and "401" in message and REPO in message, message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__, \
        "the message must say it all (FetchError is raised `from None`)"
    assert not req.directory.exists()
    assert all(r.authorization is None for r in hub.requests), "no token of the host may leak into the request"


def test_a_gated_repo_is_staged_with_the_token_which_never_reaches_the_cdn(hub, tmp_path):
    hub.gate = "files"
    marker = stage(request(tmp_path), HubFetcher(endpoint=hub.endpoint, token=TOKEN), log=quiet)
    assert marker["commit"] == COMMIT
    on_hub = [r for r in hub.requests if not r.path.startswith("/cdn/")]
    on_cdn = [r for r in hub.requests if r.path.startswith("/cdn/")]
    assert on_hub and all(r.authorization == f"Bearer {TOKEN}" for r in on_hub)
    assert len(on_cdn) == len(SHARDS) and all(r.authorization is None for r in on_cdn)
    assert all(r.host == f"localhost:{hub.port}" for r in on_cdn)


def test_the_token_can_come_from_hf_token(hub, tmp_path, monkeypatch):
    # The documented way for the stager pods: $HF_TOKEN from a Secret, no token argument.
    hub.gate = "listing"
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    marker = stage(request(tmp_path), HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert marker["commit"] == COMMIT


def test_an_unknown_revision_is_a_stage_error(hub, tmp_path):
    req = StageRequest(repo=REPO, revision="v9.9", root=tmp_path / "models", ignore_patterns=IGNORE)
    with pytest.raises(StageError, match=rf"(?s)cannot list {re.escape(REPO)}@v9\.9: 404 .*Revision Not Found"):
        stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)


def test_an_unreachable_hub_is_a_stage_error_not_a_crash(hf_isolated, tmp_path):
    # A port nobody listens on: huggingface_hub 2.x raises httpx2.ConnectError, which is
    # neither an HfHubHTTPError nor an OSError.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    req = request(tmp_path)
    with pytest.raises(StageError, match=rf"cannot reach the hub for {re.escape(REPO)}@main"):
        stage(req, HubFetcher(endpoint=f"http://127.0.0.1:{port}"), log=quiet)


def test_a_damaged_staged_copy_is_repaired_in_one_run(hub, tmp_path):
    # The waiting pod found a flipped bit and dropped the marker; the stager must fetch that
    # file again, even though huggingface_hub's local_dir metadata says it has it already.
    req = request(tmp_path)
    stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    victim = req.directory / SHARDS[0]
    victim.write_bytes(_flip(victim.read_bytes()))
    with pytest.raises(StageError, match="damaged"):
        wait_for_stage(req.directory, timeout=1, verify=True, log=quiet)
    hub.requests.clear()
    stage(req, HubFetcher(endpoint=hub.endpoint), log=quiet)
    assert verify_sums(req.directory) == []
    assert (req.directory / SHARDS[0]).read_bytes() == hub.files[SHARDS[0]]
    assert [p for p in hub.paths("GET") if not p.startswith("/api/")] == \
        [f"/cdn/{hashlib.sha256(hub.files[SHARDS[0]]).hexdigest()}"]
