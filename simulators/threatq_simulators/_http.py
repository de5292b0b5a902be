"""Serving plumbing both product simulators share: a background-thread HTTP server used as a
context manager, with its base URL, and the request handler both derive from (keep-alive with
Nagle off, the fault plan's answers).

Standard library only: the simulators import nothing from the provider's client code.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from threatq_simulators.faults import FaultRule


class BackgroundServer:
    """Base of a simulator that serves HTTP from a daemon thread.

    Subclasses set ``host``/``port`` and implement :meth:`start` (bind, then :meth:`_serve`) and
    :meth:`stop`; ``with sim:`` starts and stops it.
    """

    host: str
    port: int
    _server: ThreadingHTTPServer | None
    _thread: threading.Thread | None

    def start(self) -> str:
        """Start serving. :return: the base URL."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving and close the socket."""
        raise NotImplementedError

    def _serve(self, server: ThreadingHTTPServer, thread_name: str, **serve_kwargs: Any) -> None:
        """Serve ``server`` from a daemon thread, taking the port it bound (port 0 picks a free one).

        :param server: the bound server.
        :param thread_name: the thread's name; ``{port}`` is replaced by the bound port.
        :param serve_kwargs: passed to ``serve_forever`` (e.g. ``poll_interval``).
        """
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs=serve_kwargs,
                                        name=thread_name.format(port=self.port), daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8480``."""
        return f"http://{self.host}:{self.port}"


class Reply:
    """A prepared answer: status, body bytes, content type, headers."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: str = "application/json",
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


#: Appended by the ``malformed`` action: what a proxy sends in place of an answer it lost.
MALFORMED_TAIL = b"<html><body>502 Bad Gateway</body></html>"


class FaultingHandler(BaseHTTPRequestHandler):
    """Request handler both simulators derive from: HTTP/1.1 keep-alive, Nagle off, and the one
    place where a fault rule's answer (the shared schema of :mod:`threatq_simulators.faults`)
    takes effect.

    Subclasses call :meth:`serve` per request and may override :meth:`send_reply` (how an answer
    is written) and :meth:`record` (what is logged of it).
    """

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY (set by StreamRequestHandler.setup): headers and body leave in two writes, and
    # with Nagle on the second waits for the client's delayed ACK of the first, ~40 ms on Linux,
    # on every request of a keep-alive connection (issue #17: 35 of the MISP share's 69 s).
    disable_nagle_algorithm = True

    def serve(self, rule: FaultRule | None, handle: Callable[[], Reply], fault_reply: Callable[[FaultRule], Reply],
              hooks: Mapping[str, Callable[[], None]] | None = None) -> None:
        """Answer one request under ``rule``, the transport rule the plan chose (None: none).

        :param handle: produces the real answer (the request takes effect when it is called).
        :param fault_reply: the answer of a ``status`` rule (the product's own error body).
        :param hooks: what an extension's action does before the request is handled normally
            (``expire_token``).
        """
        if rule is None:
            self.send_reply(handle())
            return
        if rule.delay_s:
            time.sleep(rule.delay_s)
        if rule.action in ("reset", "close"):
            self.record(0, faulted=True)
            self.drop(rst=rule.action == "reset")
            return
        if rule.action is not None and hooks and rule.action in hooks:
            hooks[rule.action]()
        elif rule.status is not None:
            self.send_reply(fault_reply(rule), faulted=True)
            return
        reply = handle()
        if rule.action == "commit_then_reset":
            self.record(0, faulted=True)
            self.drop(rst=True)
        elif rule.action == "truncate":
            self.send_truncated(reply)
        elif rule.action == "malformed":
            body = reply.body[: max(1, len(reply.body) // 3)] + MALFORMED_TAIL
            self.send_reply(Reply(200, body, reply.content_type), faulted=True)
        else:
            self.send_reply(reply)

    @staticmethod
    def error_body(rule: FaultRule, default: Callable[[int], Any]) -> Reply:
        """A ``status`` rule's answer: its ``body`` (a str as is, ``text/html`` when it starts
        with ``<``; any other value as JSON), else ``default(status)`` as JSON; its headers."""
        status = int(rule.status or 500)
        body = rule.body if rule.body is not None else default(status)
        if isinstance(body, str):
            ctype = "text/html" if body.lstrip().startswith("<") else "application/json"
            return Reply(status, body.encode("utf-8"), ctype, rule.headers)
        return Reply(status, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                     "application/json", rule.headers)

    def record(self, status: int, *, faulted: bool) -> None:
        """Log an answer about to leave (status 0: the connection was dropped). Default: nothing."""

    def send_reply(self, reply: Reply, *, faulted: bool = False) -> None:
        """Write ``reply`` (HEAD: headers only, with the body's length)."""
        self.record(reply.status, faulted=faulted)
        self.send_response(reply.status)
        if reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if reply.status != 204 and reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    def send_truncated(self, reply: Reply) -> None:
        """Announce the full Content-Length, send half the body, close (the ``truncate`` action)."""
        self.record(reply.status, faulted=True)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body[: len(reply.body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drop(self, *, rst: bool) -> None:
        """Close the connection without answering: with a TCP RST (``reset``) or a FIN (``close``)."""
        self.close_connection = True
        try:
            if rst:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
