"""Fetch avatar bytes from http(s) URLs, file:// URLs and local paths, with hard limits.

One pooled httpx client serves all fetch workers of a batch. Network errors, 5xx and 429 are retried
a bounded number of times with exponential backoff (honouring a short Retry-After); everything else
fails at once with a message that says what the server did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.netguard import AddressRefused, GuardedTransport, parse_networks
from facebatch_gui.core.settings import FetchSettings

_RETRY_STATUS = {429, 500, 502, 503, 504}
_USER_AGENT = "FaceBatch/0.1 (+batch face enrollment)"


def classify_source(url: str) -> str:
    """'http', 'file' or 'path'; raises invalid_input for anything else."""
    text = url.strip()
    if not text:
        raise ItemError(ErrorCode.INVALID_INPUT, "avatar_image_url is empty")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ItemError(ErrorCode.INVALID_INPUT, f"URL has no host: {text!r}")
        try:
            parts.port  # noqa: B018 - raises on a port out of range or not a number
        except ValueError as exc:
            # httpx would not refuse http://host:99999/, it would try some other port.
            raise ItemError(ErrorCode.INVALID_INPUT, f"malformed URL {text!r}: {exc}") from exc
        return "http"
    if scheme == "file":
        return "file"
    if scheme == "" or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):
        return "path"
    raise ItemError(
        ErrorCode.INVALID_INPUT,
        f"Unsupported URL scheme {scheme!r} in {text!r}: use http(s)://, file:// or a path",
    )


class Fetcher:
    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        max_connections: int = 16,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings or FetchSettings()
        s = self.settings
        self._cancelled = cancelled
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(s.read_timeout_s, connect=s.connect_timeout_s),
            limits=limits,
            # Without private networks, every connection (redirects too) is vetted at connect time.
            transport=None
            if s.allow_private_networks
            else GuardedTransport(limits=limits, allowed=parse_networks(s.allowed_networks)),
            follow_redirects=True,
            max_redirects=s.max_redirects,
            headers={"User-Agent": _USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
        )
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str) -> bytes:
        kind = classify_source(url)
        if kind == "http":
            return self._fetch_http(url.strip())
        if not self.settings.allow_local:
            raise ItemError(
                ErrorCode.INVALID_INPUT,
                f"Local files are not accepted here, only http(s) URLs: {url!r}",
            )
        if kind == "file":
            parts = urlsplit(url.strip())
            if parts.netloc not in ("", "localhost"):
                raise ItemError(ErrorCode.INVALID_INPUT, f"file:// URL names a remote host: {url}")
            return self._read_file(Path(unquote(parts.path)))
        return self._read_file(Path(url.strip()).expanduser())

    def _read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.settings.max_bytes:
                raise ItemError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"File {path} is {size:,} bytes, over the limit of {self.settings.max_bytes:,}",
                )
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ItemError(ErrorCode.DOWNLOAD_FAILED, f"File not found: {path}") from exc
        except IsADirectoryError as exc:
            raise ItemError(ErrorCode.DOWNLOAD_FAILED, f"{path} is a folder, not a file") from exc
        except PermissionError as exc:
            raise ItemError(ErrorCode.DOWNLOAD_FAILED, f"No permission to read {path}") from exc

    def _fetch_http(self, url: str) -> bytes:
        s = self.settings
        attempt = 0
        while True:
            if self._cancelled():
                raise ItemError(ErrorCode.CANCELLED, "Cancelled before the download finished")
            retry_after: float | None = None
            try:
                return self._fetch_once(url)
            except _Retryable as exc:
                failure, retry_after = exc.error, exc.retry_after
            except AddressRefused as exc:
                # The URL's own host is the caller's input; a redirect there is the server's doing.
                if (urlsplit(url).hostname or "").strip("[]") == exc.host:
                    raise ItemError(ErrorCode.INVALID_INPUT, f"Refused {url}: {exc}") from exc
                raise ItemError(
                    ErrorCode.DOWNLOAD_FAILED, f"Refused a redirect from {url}: {exc}"
                ) from exc
            except httpx.TooManyRedirects as exc:
                raise ItemError(
                    ErrorCode.DOWNLOAD_FAILED, f"More than {s.max_redirects} redirects for {url}"
                ) from exc
            except httpx.InvalidURL as exc:
                raise ItemError(ErrorCode.INVALID_INPUT, f"Malformed URL {url!r}: {exc}") from exc
            except httpx.TransportError as exc:
                failure = ItemError(
                    ErrorCode.DOWNLOAD_FAILED,
                    f"Network error for {url}: {type(exc).__name__}: {exc or 'no detail'}",
                )
            if attempt >= s.retries or self._closed.is_set():
                if attempt:
                    failure.message += f" (after {attempt + 1} tries)"
                    failure.args = (failure.message,)
                raise failure
            delay = s.backoff_s * (2**attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 10.0))
            attempt += 1
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._cancelled():
                time.sleep(min(0.05, delay))

    def _fetch_once(self, url: str) -> bytes:
        limit = self.settings.max_bytes
        with self._client.stream("GET", url) as response:
            status = response.status_code
            if status >= 400:
                error = ItemError(
                    ErrorCode.DOWNLOAD_FAILED,
                    f"HTTP {status} {response.reason_phrase} for {url}",
                    http_status=status,
                )
                if status in _RETRY_STATUS:
                    raise _Retryable(error, _retry_after(response))
                raise error
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ItemError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"Server announces {int(declared):,} bytes, over the limit of {limit:,}",
                )
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_bytes(64 * 1024):
                received += len(chunk)
                if received > limit:
                    raise ItemError(
                        ErrorCode.IMAGE_TOO_LARGE,
                        f"Download passed the limit of {limit:,} bytes; stopped reading",
                    )
                if self._cancelled():
                    raise ItemError(ErrorCode.CANCELLED, "Cancelled during the download")
                chunks.append(chunk)
            return b"".join(chunks)


class _Retryable(Exception):
    def __init__(self, error: ItemError, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:
        return None
