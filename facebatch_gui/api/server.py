"""`ApiServer`: uvicorn in a daemon thread, for the GUI and `facebatch serve`.

The socket is bound in `start()`, in the caller's thread, so a port in use or a bad address is an
exception there, and port 0 gives a free port that `url` reports. uvicorn installs no signal
handlers off the main thread; the owner stops the server with `stop()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from facebatch_gui.api.app import create_app
from facebatch_gui.core.apiconfig import ApiConfig, ApiConfigError, check_exposure
from facebatch_gui.core.service import TaskService
from facebatch_gui.core.settings import BatchSettings


class ApiServer:
    def __init__(
        self,
        service: TaskService,
        config: ApiConfig | None = None,
        *,
        settings: BatchSettings | Callable[[], BatchSettings] | None = None,
    ) -> None:
        self.config = config or ApiConfig()
        self.app = create_app(service, self.config, settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("The server is not started")
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> str:
        """Bind, serve in a thread, wait until it accepts; returns the URL."""
        if self.running:
            return self.url
        check_exposure(self.config)
        sock = self._bind()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="facebatch-api", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ApiConfigError(f"The HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._server = self._thread = self._socket = None

    def _bind(self) -> socket.socket:
        host, port = self.config.host.strip("[]"), self.config.port
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ApiConfigError(f"Cannot listen on {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ApiConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sock.set_inheritable(True)
        return sock
