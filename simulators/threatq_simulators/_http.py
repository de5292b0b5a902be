"""Serving plumbing both product simulators share: a background-thread HTTP server used as a
context manager, with its base URL.

Standard library only: the simulators import nothing from the provider's client code.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, Self


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
