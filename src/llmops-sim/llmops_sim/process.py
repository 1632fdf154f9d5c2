"""Start `llmops sim serve` as a child process and wait for it: for tests, benchmarks and
the sandbox. The port is chosen by the OS (--port 0) and read back from the log line, so
parallel tests never race for ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Mapping, Sequence

# Not `python -m llmops.cli`: run as __main__, that module's UserError would be a second
# class and user errors would surface as tracebacks.
CLI_ENTRY = "import sys; from llmops.cli import main; sys.exit(main(sys.argv[1:]))"
_LISTEN_RE = re.compile(r"Starting vLLM API server on http://([^:\s]+):(\d+)")


@dataclass
class SimProcess:
    process: subprocess.Popen
    host: str
    port: int
    log_lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll /health until 200; raise with the log tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"simulator at {self.url} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_lines[-lines:])

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_sim(vllm_args: Sequence[str], env: Mapping[str, str] | None = None, host: str = "127.0.0.1",
              startup_timeout: float = 20.0, python: str = sys.executable) -> SimProcess:
    """Launch with `vllm serve`-style args (without --host/--port) and LLMOPS_SIM_* env."""
    full_env = {**os.environ, "LLMOPS_SIM_STARTUP_SECONDS": "0", **(env or {}), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [python, "-c", CLI_ENTRY, "sim", "serve", *vllm_args, "--host", host, "--port", "0"],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    found = threading.Event()
    address: list[tuple[str, int]] = []

    def pump() -> None:  # keep reading so the child never blocks on a full pipe
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            match = _LISTEN_RE.search(line)
            if match and not found.is_set():
                address.append((match.group(1), int(match.group(2))))
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(startup_timeout) or not address:
        process.kill()
        raise RuntimeError("simulator did not start listening:\n" + "\n".join(lines[-30:]))
    return SimProcess(process, address[0][0], address[0][1], lines)
