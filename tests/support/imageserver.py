"""A real HTTP server on 127.0.0.1 that serves photos and misbehaves on request.

Used by the tests and by `bench/pipeline.py`. Routes (PATH is relative to the served folder):
  /faces/PATH                    the file, with its content type (after `latency_s`, if set)
  /status/CODE                   an empty response with that status
  /flaky/N/KEY/PATH              503 for the first N requests of KEY, then the file
  /retry-after/KEY/PATH          429 with `Retry-After: 0.2` once per KEY, then the file
  /slow/MS/PATH                  waits MS milliseconds, then the file
  /page.html                     an HTML page with status 200 (the wrong content)
  /mislabelled/PATH              the file's bytes labelled text/html
  /truncated/PATH                announces the whole length, sends half, closes the connection
  /truncated-file/PATH           a complete response whose body is the first half of the file
  /big/N  and /big-chunked/N     N bytes (with Content-Length, or chunked without it)
  /redirect/N/PATH               a chain of N redirects, then the file
"""

from __future__ import annotations

import mimetypes
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ImageServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(
        self, status: int, body: bytes = b"", ctype: str = "application/octet-stream"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, rel: str, ctype: str | None = None) -> None:
        path = (self.server.root / unquote(rel)).resolve()
        if not path.is_relative_to(self.server.root) or not path.is_file():
            self._send(404, b"not found", "text/plain")
            return
        guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), ctype or guessed)

    def do_GET(self) -> None:
        srv = self.server
        path = self.path.split("?", 1)[0]
        srv.hits[path] += 1
        parts = path.lstrip("/").split("/")
        head, rest = parts[0], parts[1:]
        if head == "faces":
            if srv.latency_s:
                time.sleep(srv.latency_s)
            self._file("/".join(rest))
        elif head == "status":
            self._send(int(rest[0]), b"", "text/plain")
        elif head == "flaky":
            n, key = int(rest[0]), rest[1]
            with srv.lock:
                srv.keys[key] += 1
                count = srv.keys[key]
            if count <= n:
                self._send(503, b"busy", "text/plain")
            else:
                self._file("/".join(rest[2:]))
        elif head == "retry-after":
            key = rest[0]
            with srv.lock:
                srv.keys[key] += 1
                first = srv.keys[key] == 1
            if first:
                self.send_response(429)
                self.send_header("Retry-After", "0.2")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._file("/".join(rest[1:]))
        elif head == "slow":
            deadline = time.monotonic() + int(rest[0]) / 1000
            while time.monotonic() < deadline and not srv.stopping.is_set():
                time.sleep(0.02)
            self._file("/".join(rest[1:]))
        elif head == "page.html":
            self._send(200, b"<!DOCTYPE html><html><body>Not found</body></html>", "text/html")
        elif head == "mislabelled":
            self._file("/".join(rest), ctype="text/html")
        elif head == "truncated":
            data = (srv.root / "/".join(rest)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif head == "truncated-file":
            data = (srv.root / "/".join(rest)).read_bytes()
            self._send(200, data[: len(data) // 2], "image/jpeg")
        elif head == "big":
            self._send(200, b"\0" * int(rest[0]), "image/jpeg")
        elif head == "big-chunked":
            total = int(rest[0])
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            sent = 0
            try:
                while sent < total:
                    piece = chunk[: min(len(chunk), total - sent)]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    sent += len(piece)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
        elif head == "redirect":
            n = int(rest[0])
            target = (
                f"/redirect/{n - 1}/{'/'.join(rest[1:])}"
                if n > 1
                else f"/faces/{'/'.join(rest[1:])}"
            )
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no such route", "text/plain")


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, *, latency_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.latency_s = latency_s
        self.hits: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up early (limits, cancel) are expected here, not errors."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, route: str) -> str:
        return f"{self.base_url}/{route.lstrip('/')}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class ImageServerProcess:
    """The same server in a child process, for measurements where its threads must not compete
    with the process under test for the GIL (a real avatar host is another machine)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def url(self, route: str) -> str:
        return f"{self.base_url}/{route.lstrip('/')}"

    def __enter__(self) -> ImageServerProcess:
        repo = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.imageserver", str(self.root)],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self._proc.kill()
            raise RuntimeError(f"image server did not start: {self.base_url!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)


def _serve_until_stdin_closes(root: Path) -> None:
    with ImageServer(root) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # returns when the parent closes the pipe or dies


if __name__ == "__main__":
    _serve_until_stdin_closes(Path(sys.argv[1]))
