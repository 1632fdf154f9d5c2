"""A tiny HTTP server standing in for a container in sandbox tests (image llmops/test-http:*).

GET /healthz -> 200 (503 until --ready-after seconds passed), GET /metrics -> a Prometheus counter, GET /env -> the process
environment as JSON, GET /file?path=P -> the file's text (what the pod sees), POST /exit?code=N
-> exits with N. Listens on --port / $PORT (default 8080) on all addresses of its namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

STARTED = time.monotonic()


def make_handler(ready_after: float):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            url = urlparse(self.path)
            if url.path == "/healthz":
                ready = time.monotonic() - STARTED >= ready_after
                self._send(200 if ready else 503, "ok" if ready else "starting")
            elif url.path == "/metrics":
                self.server.requests += 1
                self._send(200, "# TYPE test_http_requests_total counter\n"
                                f"test_http_requests_total {self.server.requests}\n", "text/plain; version=0.0.4")
            elif url.path == "/env":
                self._send(200, json.dumps(dict(os.environ)), "application/json")
            elif url.path == "/file":
                path = parse_qs(url.query).get("path", [""])[0]
                try:
                    with open(path) as f:
                        self._send(200, f.read())
                except OSError as exc:
                    self._send(404, str(exc))
            else:
                self._send(200, "llmops test-http\n")

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/exit":
                code = int(parse_qs(url.query).get("code", ["1"])[0])
                self._send(200, f"exiting {code}")
                threading.Timer(0.05, os._exit, args=(code,)).start()
            else:
                self._send(404, "not found")

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write("test-http: " + fmt % args + "\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops-test-http")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--ready-after", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("0.0.0.0", args.port), make_handler(args.ready_after))
    server.requests = 0
    print(f"test-http listening on :{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
