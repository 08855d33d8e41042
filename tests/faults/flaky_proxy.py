"""A fault-injecting TCP proxy on 127.0.0.1 for object-storage tests (issue 12).

``FlakyProxy(upstream_port).start()`` listens on a free loopback port and forwards each client
connection to ``127.0.0.1:upstream_port`` (moto's S3 server). Every ``every``-th new connection,
while the fault budget lasts, gets one fault instead, in rotation:

- ``reset``: the request is read, then the connection is closed with a TCP RST;
- ``http503``: the request is read and answered ``503 SlowDown`` (S3's "reduce your request
  rate") with ``Connection: close``;
- ``stall``: nothing is forwarded for ``stall_s`` seconds, then the connection is reset (a
  stalled peer: the client's read timeout must fire and its retry must succeed);
- ``cut``: the request is forwarded, the response is cut after ``cut_after`` bytes with a RST
  (a download or an upload's reply broken mid-stream).

Faults are bounded in count (``per_kind`` of each) and in time (none after ``window_s``
seconds), so a client with retries always finishes; ``stats`` counts what was injected, so a
test can check the faults really happened. Connections are otherwise relayed byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter

KINDS = ("reset", "http503", "stall", "cut")

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def _rst_close(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _read_request(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read one request's head and (``Content-Length``) body, unless it waits for ``100``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        if headers.get(b"expect", b"").lower() == b"100-continue":
            return data
        length = int(headers.get(b"content-length", b"0") or 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except (OSError, ValueError):
        return data


class FlakyProxy:
    """A threaded loopback TCP proxy that injects bounded faults (see the module docstring)."""

    def __init__(self, upstream_port: int, *, every: int = 3, per_kind: int = 3,
                 window_s: float = 300.0, stall_s: float = 4.0, cut_after: int = 64,
                 kinds: tuple[str, ...] = KINDS) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.every, self.per_kind, self.window_s = every, per_kind, window_s
        self.stall_s, self.cut_after, self.kinds = stall_s, cut_after, kinds
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._next_kind = 0
        self._t0 = 0.0
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the endpoint to give the client."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FlakyProxy:
        """Start accepting connections in a daemon thread."""
        self._t0 = time.monotonic()
        self._server.listen(128)
        threading.Thread(target=self._accept, daemon=True, name="flaky-proxy").start()
        return self

    def stop(self) -> None:
        """Stop accepting (open relays end when their peers close)."""
        self._stopped.set()
        self._server.close()

    def faults(self) -> int:
        """How many faults were injected so far."""
        with self._lock:
            return sum(self.stats[k] for k in self.kinds)

    def _choose(self) -> str:
        with self._lock:
            self.stats["connections"] += 1
            n = self.stats["connections"]
            if n % self.every or time.monotonic() - self._t0 > self.window_s:
                return "pass"
            for _ in self.kinds:
                kind = self.kinds[self._next_kind % len(self.kinds)]
                self._next_kind += 1
                if self.stats[kind] < self.per_kind:
                    self.stats[kind] += 1
                    return kind
            return "pass"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        kind = self._choose()
        try:
            if kind == "reset":
                _read_request(client)
                _rst_close(client)
            elif kind == "http503":
                _read_request(client)
                client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                               b"Content-Length: " + str(len(SLOW_DOWN)).encode()
                               + b"\r\nConnection: close\r\n\r\n" + SLOW_DOWN)
                client.close()
            elif kind == "stall":
                time.sleep(self.stall_s)
                _rst_close(client)
            else:
                self._relay(client, cut=kind == "cut")
        except OSError:
            client.close()

    def _relay(self, client: socket.socket, *, cut: bool) -> None:
        upstream = socket.create_connection(self.upstream, timeout=30)
        client.settimeout(None)
        upstream.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
            sent = 0
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    if limit is not None and sent + len(chunk) > limit:
                        dst.sendall(chunk[:limit - sent])
                        _rst_close(dst)
                        src.close()
                        return
                    dst.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            for s in (dst, src):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        up = threading.Thread(target=pump, args=(client, upstream, None), daemon=True)
        up.start()
        pump(upstream, client, self.cut_after if cut else None)
        up.join(timeout=5)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()
