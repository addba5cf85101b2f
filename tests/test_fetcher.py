"""Fetching avatars from a real misbehaving HTTP server on 127.0.0.1 and from local files."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.fetcher import Fetcher, classify_source
from facebatch_gui.core.settings import FetchSettings
from tests.support.imageserver import ImageServer

pytestmark = pytest.mark.timeout(30)

PHOTO = "probes/obama.jpg"


def _settings(**overrides: object) -> FetchSettings:
    base: dict[str, object] = {
        "connect_timeout_s": 2.0,
        "read_timeout_s": 3.0,
        "retries": 2,
        "backoff_s": 0.01,
        "max_redirects": 5,
    }
    base.update(overrides)
    return FetchSettings(**base)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(_settings()) as f:
        yield f


def _key() -> str:
    return uuid.uuid4().hex


def _fail(fetcher: Fetcher, url: str) -> ItemError:
    with pytest.raises(ItemError) as info:
        fetcher.fetch(url)
    return info.value


# --- classify_source -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/a.jpg", "http"),
        ("  HTTPS://127.0.0.1/a.jpg  ", "http"),
        ("file:///tmp/a.jpg", "file"),
        ("/tmp/a.jpg", "path"),
        ("photos/a.jpg", "path"),
        ("~/a.jpg", "path"),
        ("C:\\photos\\a.jpg", "path"),
        ("C:/photos/a.jpg", "path"),
    ],
)
def test_classify_source(url: str, kind: str) -> None:
    assert classify_source(url) == kind


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://", "no host"),
        ("https:///a.jpg", "no host"),
        ("http://127.0.0.1:99999/a.jpg", "Port out of range"),
        ("http://127.0.0.1:8o/a.jpg", "malformed URL"),
        ("ftp://127.0.0.1/a.jpg", "'ftp'"),
        ("data:image/png;base64,AAAA", "'data'"),
        ("javascript:alert(1)", "'javascript'"),
    ],
)
def test_classify_source_rejects(url: str, needle: str) -> None:
    with pytest.raises(ItemError) as info:
        classify_source(url)
    assert info.value.code == ErrorCode.INVALID_INPUT
    assert needle in info.value.message


# --- HTTP ----------------------------------------------------------------------------------------


def test_http_200_returns_the_exact_bytes(
    fetcher: Fetcher, image_server: ImageServer, faces_dir: Path
) -> None:
    data = fetcher.fetch(image_server.url(f"/faces/{PHOTO}"))
    assert data == (faces_dir / PHOTO).read_bytes()


def test_http_404_fails_at_once(fetcher: Fetcher, image_server: ImageServer) -> None:
    route = f"/faces/missing/{_key()}.jpg"
    err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "HTTP 404" in err.message
    assert err.details.get("http_status") == 404
    assert image_server.hits[route] == 1


@pytest.mark.parametrize("status", [400, 403, 410])
def test_http_client_errors_are_not_retried(image_server: ImageServer, status: int) -> None:
    """The path is shared across runs, so count the hits this test adds."""
    route = f"/status/{status}"
    before = image_server.hits[route]
    with Fetcher(_settings(retries=3)) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert f"HTTP {status}" in err.message
    assert image_server.hits[route] - before == 1


def test_http_500_is_retried_then_fails(image_server: ImageServer) -> None:
    route = "/status/500"
    before = image_server.hits[route]
    with Fetcher(_settings(retries=3)) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "HTTP 500" in err.message
    assert "after 4 tries" in err.message
    assert image_server.hits[route] - before == 4


def test_no_retries_means_one_request(image_server: ImageServer) -> None:
    route = "/status/503"
    before = image_server.hits[route]
    with Fetcher(_settings(retries=0)) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert "HTTP 503" in err.message
    assert "tries" not in err.message
    assert image_server.hits[route] - before == 1


def test_flaky_server_succeeds_after_retries(
    fetcher: Fetcher, image_server: ImageServer, faces_dir: Path
) -> None:
    key = _key()
    data = fetcher.fetch(image_server.url(f"/flaky/2/{key}/{PHOTO}"))
    assert data == (faces_dir / PHOTO).read_bytes()
    assert image_server.keys[key] == 3


def test_flaky_server_beyond_the_retries_fails(image_server: ImageServer) -> None:
    key = _key()
    with Fetcher(_settings(retries=1)) as fetcher:
        err = _fail(fetcher, image_server.url(f"/flaky/3/{key}/{PHOTO}"))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "HTTP 503" in err.message
    assert image_server.keys[key] == 2


def test_429_waits_for_retry_after_then_succeeds(
    fetcher: Fetcher, image_server: ImageServer, faces_dir: Path
) -> None:
    """The server asks for 0.2 s, far more than backoff_s=0.01, so the wait shows Retry-After."""
    key = _key()
    start = time.monotonic()
    data = fetcher.fetch(image_server.url(f"/retry-after/{key}/{PHOTO}"))
    elapsed = time.monotonic() - start
    assert data == (faces_dir / PHOTO).read_bytes()
    assert image_server.keys[key] == 2
    assert elapsed >= 0.19


def test_slow_response_times_out(image_server: ImageServer) -> None:
    route = f"/slow/3000/{PHOTO}"
    with Fetcher(_settings(read_timeout_s=0.3, retries=0)) as fetcher:
        start = time.monotonic()
        err = _fail(fetcher, image_server.url(route))
        elapsed = time.monotonic() - start
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "timeout" in err.message.lower()
    assert elapsed < 2.0


def test_slow_response_within_the_timeout_succeeds(
    image_server: ImageServer, faces_dir: Path
) -> None:
    with Fetcher(_settings(read_timeout_s=3.0)) as fetcher:
        data = fetcher.fetch(image_server.url(f"/slow/200/{PHOTO}"))
    assert data == (faces_dir / PHOTO).read_bytes()


def test_truncated_response_fails(image_server: ImageServer) -> None:
    """The server announces the full length, sends half and hangs up; that is retried too."""
    route = f"/truncated/{PHOTO}"
    before = image_server.hits[route]
    with Fetcher(_settings(retries=1)) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "Network error" in err.message
    assert image_server.hits[route] - before == 2


def test_big_download_with_content_length_is_refused_before_reading(
    image_server: ImageServer,
) -> None:
    limit = 100_000
    with Fetcher(_settings(max_bytes=limit, retries=3)) as fetcher:
        err = _fail(fetcher, image_server.url(f"/big/{20 * 1024 * 1024}"))
    assert err.code == ErrorCode.IMAGE_TOO_LARGE
    # The header alone decided it: no body was read.
    assert "Server announces 20,971,520 bytes" in err.message
    assert "100,000" in err.message


def test_big_chunked_download_stops_at_the_limit(image_server: ImageServer) -> None:
    limit = 100_000
    route = f"/big-chunked/{50 * 1024 * 1024}"
    before = image_server.hits[route]
    with Fetcher(_settings(max_bytes=limit, retries=3)) as fetcher:
        start = time.monotonic()
        err = _fail(fetcher, image_server.url(route))
        elapsed = time.monotonic() - start
    assert err.code == ErrorCode.IMAGE_TOO_LARGE
    assert "stopped reading" in err.message
    assert image_server.hits[route] - before == 1
    assert elapsed < 5.0


def test_download_of_exactly_the_limit_is_accepted(image_server: ImageServer) -> None:
    with Fetcher(_settings(max_bytes=70_000)) as fetcher:
        assert len(fetcher.fetch(image_server.url("/big-chunked/70000"))) == 70_000
        assert len(fetcher.fetch(image_server.url("/big/70000"))) == 70_000
        err = _fail(fetcher, image_server.url("/big-chunked/70001"))
    assert err.code == ErrorCode.IMAGE_TOO_LARGE


def test_redirects_within_the_limit_are_followed(
    image_server: ImageServer, faces_dir: Path
) -> None:
    with Fetcher(_settings(max_redirects=3)) as fetcher:
        data = fetcher.fetch(image_server.url(f"/redirect/3/{PHOTO}"))
    assert data == (faces_dir / PHOTO).read_bytes()


def test_too_many_redirects_fail(image_server: ImageServer) -> None:
    route = f"/redirect/4/{PHOTO}"
    before = image_server.hits[route]
    with Fetcher(_settings(max_redirects=3)) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "More than 3 redirects" in err.message
    assert image_server.hits[route] - before == 1


@pytest.mark.parametrize("port", ["99999", "65536", "abc"])
def test_malformed_port_is_invalid_input(fetcher: Fetcher, port: str) -> None:
    """httpx itself would try to connect (99999 ends up as another port) and retry."""
    err = _fail(fetcher, f"http://127.0.0.1:{port}/x.jpg")
    assert err.code == ErrorCode.INVALID_INPUT
    assert "malformed URL" in err.message


def test_connection_refused_is_download_failed(image_server: ImageServer) -> None:
    """A port that nothing listens on: take one from a closed server on 127.0.0.1."""
    with ImageServer(image_server.root) as other:
        url = other.url(f"/faces/{PHOTO}")
    with Fetcher(_settings(retries=1)) as fetcher:
        err = _fail(fetcher, url)
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "Network error" in err.message
    assert "ConnectError" in err.message


# --- local files ---------------------------------------------------------------------------------


def test_file_url_and_plain_path(fetcher: Fetcher, faces_dir: Path) -> None:
    path = faces_dir / PHOTO
    expected = path.read_bytes()
    assert fetcher.fetch(path.as_uri()) == expected
    assert fetcher.fetch(f"file://localhost{path}") == expected
    assert fetcher.fetch(str(path)) == expected
    assert fetcher.fetch(f"  {path}  ") == expected


def test_file_url_with_escaped_characters(
    fetcher: Fetcher, faces_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "my photo #1.jpg"
    target.symlink_to(faces_dir / PHOTO)
    assert "%20" in target.as_uri()
    assert fetcher.fetch(target.as_uri()) == (faces_dir / PHOTO).read_bytes()


def test_missing_local_file(fetcher: Fetcher, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    for url in (str(missing), missing.as_uri()):
        err = _fail(fetcher, url)
        assert err.code == ErrorCode.DOWNLOAD_FAILED
        assert "not found" in err.message
        assert "missing.jpg" in err.message


def test_local_folder_is_download_failed(fetcher: Fetcher, tmp_path: Path) -> None:
    err = _fail(fetcher, str(tmp_path))
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "folder" in err.message


def test_local_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\0" * 2048)
    with Fetcher(_settings(max_bytes=1024)) as fetcher:
        err = _fail(fetcher, str(path))
    assert err.code == ErrorCode.IMAGE_TOO_LARGE
    assert "2,048" in err.message


def test_file_url_naming_a_remote_host_is_refused(fetcher: Fetcher) -> None:
    err = _fail(fetcher, "file://fileserver/share/a.jpg")
    assert err.code == ErrorCode.INVALID_INPUT
    assert "remote host" in err.message


def test_local_sources_refused_when_not_allowed(faces_dir: Path) -> None:
    path = faces_dir / PHOTO
    with Fetcher(_settings(allow_local=False)) as fetcher:
        for url in (path.as_uri(), str(path)):
            err = _fail(fetcher, url)
            assert err.code == ErrorCode.INVALID_INPUT
            assert "only http(s)" in err.message


def test_unsupported_scheme(fetcher: Fetcher) -> None:
    err = _fail(fetcher, "ftp://127.0.0.1/a.jpg")
    assert err.code == ErrorCode.INVALID_INPUT
    assert "Unsupported URL scheme" in err.message


# --- cancellation --------------------------------------------------------------------------------


def test_cancelled_before_the_request(image_server: ImageServer) -> None:
    route = f"/faces/{PHOTO}?{_key()}"
    before = image_server.hits[f"/faces/{PHOTO}"]
    with Fetcher(_settings(), cancelled=lambda: True) as fetcher:
        err = _fail(fetcher, image_server.url(route))
    assert err.code == ErrorCode.CANCELLED
    assert image_server.hits[f"/faces/{PHOTO}"] == before


def test_cancel_during_backoff_stops_waiting(image_server: ImageServer) -> None:
    """With a 5 s backoff, only an honoured cancel ends the fetch quickly."""
    route = "/status/503"
    before = image_server.hits[route]

    def cancelled() -> bool:
        return image_server.hits[route] > before

    with Fetcher(_settings(retries=3, backoff_s=5.0), cancelled=cancelled) as fetcher:
        start = time.monotonic()
        err = _fail(fetcher, image_server.url(route))
        elapsed = time.monotonic() - start
    assert err.code == ErrorCode.CANCELLED
    assert elapsed < 2.0
    assert image_server.hits[route] - before == 1


def test_cancel_during_a_download(image_server: ImageServer) -> None:
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls > 1  # not before the request, but once the body is streaming

    with Fetcher(_settings(max_bytes=100 * 1024 * 1024), cancelled=cancelled) as fetcher:
        err = _fail(fetcher, image_server.url(f"/big-chunked/{20 * 1024 * 1024}"))
    assert err.code == ErrorCode.CANCELLED
    assert "during the download" in err.message
