"""A plain TCP forwarder, so pods (in their own network namespaces) reach host services that
listen on loopback only — the sandbox's Prometheus — at the bridge gateway IP."""

from __future__ import annotations

import socket
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()   # target down (e.g. Prometheus stopped): refuse like it would
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def start_forwarder(listen: tuple[str, int], target: tuple[str, int]) -> socket.socket:
    """Forward connections to `listen` to `target` from daemon threads; returns the listener."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(64)
    threading.Thread(target=_serve, args=(listener, target), name=f"forward-{listen[1]}", daemon=True).start()
    return listener
