"""A real HTTP server on loopback for the gateway's tests, recording every request it gets.

Routes (the path's last part decides; any prefix works, so one server serves several rules):

* ``.../echo``: 200 with a JSON echo of the request (method, path, query, headers, body), the
  query and ``Authorization`` echoed in response headers too (a server that leaks what it got);
* ``.../redirect?to=URL&status=302``: a redirect to ``URL``;
* ``.../big?n=N``: ``N`` bytes, streamed in chunks without a Content-Length;
* ``.../gzip?n=N``: ``N`` zero bytes, gzip-encoded;
* ``.../slow``: answers only once the test releases it (``release()``), or after 30 s.
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the server got, as one string to search."""
        return f"{self.method} {self.path}?{self.query}\n{self.headers}\n{self.body!r}"


@dataclass
class LoopbackServer:
    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    got_request: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def _handler(state: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, parts.path, parts.query, dict(self.headers.items()), body)
            state.seen.append(seen)
            state.got_request.set()
            query = parse_qs(parts.query)
            route = parts.path.rstrip("/").rsplit("/", 1)[-1]
            if route == "redirect":
                self.send_response(int(query.get("status", ["302"])[0]))
                self.send_header("Location", query["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif route == "big":
                n = int(query.get("n", ["0"])[0])
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                sent = 0
                try:
                    while sent < n:
                        piece = chunk[: min(len(chunk), n - sent)]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        sent += len(piece)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the gateway hung up at its cap
            elif route == "gzip":
                data = gzip.compress(b"\0" * int(query.get("n", ["0"])[0]))
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                if route == "slow":
                    state.released.wait(30)
                echo = {
                    "method": self.command,
                    "path": parts.path,
                    "query": parts.query,
                    "headers": dict(self.headers.items()),
                    "body": body.decode(errors="replace"),
                }
                data = json.dumps(echo).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Echo-Query", parts.query)
                self.send_header("X-Echo-Authorization", self.headers.get("Authorization", ""))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler


def start_server(tls: ssl.SSLContext | None = None) -> LoopbackServer:
    """Listening on 127.0.0.1 on a port of the kernel's choice, serving from a thread (over TLS
    with ``tls``, a server-side context)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state = LoopbackServer(server)
    server.RequestHandlerClass = _handler(state)
    threading.Thread(target=server.serve_forever, args=(0.02,), name="loopback-http", daemon=True).start()
    return state
