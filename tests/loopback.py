"""A loopback HTTP server in a thread of the test process, for the fake peers of the tests.

`LoopbackServer(answer)` serves on 127.0.0.1 (a free port) and calls `answer(handler, method)`
for every GET, POST, PUT, DELETE and HEAD; `url` is its base URL and `stop()` ends it. Its
handler logs nothing and sends without Nagle's delay (headers and body are two writes: without
TCP_NODELAY the second waits for the client's delayed ACK, 40 ms a call on loopback).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[BaseHTTPRequestHandler, str], None]


class LoopbackServer:
    def __init__(self, answer: Answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                answer(self, "GET")

            def do_POST(self) -> None:
                answer(self, "POST")

            def do_PUT(self) -> None:
                answer(self, "PUT")

            def do_DELETE(self) -> None:
                answer(self, "DELETE")

            def do_HEAD(self) -> None:
                answer(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
