"""A real HTTP server on 127.0.0.1 serving model-pack zips, with Range requests and faults.

Routes (NAME is a key of `files`):
  /packs/NAME        the bytes, with ETag and Accept-Ranges; honours Range and If-Range (206)
  /norange/NAME      the bytes, ignoring any Range header (always 200)
  /missing/NAME      404
Faults, set on the server object:
  drop_once_at       close the connection after this many body bytes, once (then cleared)
  delay_s            sleep this long between 64 KiB chunks (to cancel mid-download)
Every request's path and headers are recorded in `requests`, its status in `statuses`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PackServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        parts = self.path.lstrip("/").split("/")
        with srv.lock:
            srv.requests.append((self.path, dict(self.headers.items())))
        if len(parts) != 2 or parts[1] not in srv.files or parts[0] == "missing":
            srv.statuses.append(404)
            self._plain(404, b"not found")
            return
        data = srv.files[parts[1]]
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if parts[0] == "packs" and wanted and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d+)-", wanted)
            if not m or int(m.group(1)) >= len(data):
                srv.statuses.append(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, status = int(m.group(1)), 206
        body = data[start:]
        srv.statuses.append(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        with srv.lock:
            drop_at, srv.drop_once_at = srv.drop_once_at, None
        sent = 0
        try:
            for i in range(0, len(body), 65536):
                piece = body[i : i + 65536]
                if drop_at is not None and sent + len(piece) > drop_at:
                    self.wfile.write(piece[: drop_at - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(piece)
                sent += len(piece)
                if srv.delay_s:
                    time.sleep(srv.delay_s)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.statuses: list[int] = []
        self.drop_once_at: int | None = None
        self.delay_s = 0.0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up early (cancel) are expected here, not errors."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{route.lstrip('/')}"

    def __enter__(self) -> PackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
