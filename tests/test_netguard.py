"""The SSRF guard at connect time: real loopback servers, real httpx, no mocks.

Only 127.0.0.0/8 is touched: the photo server binds 127.0.0.1, and a tiny redirect server sends
clients on to 127.0.0.2 (another loopback address Linux answers on), which lets one test allow the
first hop by CIDR and see the redirect refused.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.fetcher import Fetcher
from facebatch_gui.core.netguard import refusal_reason
from facebatch_gui.core.settings import FetchSettings
from tests.support.imageserver import ImageServer

PHOTO = "faces/identities/obama/1.jpg"


def guarded(**kw: object) -> Fetcher:
    options: dict[str, object] = {"retries": 2, "backoff_s": 0.01, **kw}
    return Fetcher(FetchSettings(allow_private_networks=False, **options))  # type: ignore[arg-type]


def refusal(fetcher: Fetcher, url: str) -> ItemError:
    with pytest.raises(ItemError) as info:
        fetcher.fetch(url)
    return info.value


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    got = refusal_reason(ipaddress.ip_address(address))
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason)


def test_loopback_refused_by_default_allowed_with_the_flag(image_server: ImageServer) -> None:
    url = image_server.url(PHOTO)
    before = image_server.hits[f"/{PHOTO}"]
    with guarded() as f:
        err = refusal(f, url)
    assert err.code == ErrorCode.INVALID_INPUT
    assert "127.0.0.1" in err.message and "loopback" in err.message
    assert "tries" not in err.message  # refused at once, not retried
    assert image_server.hits[f"/{PHOTO}"] == before  # never connected
    with Fetcher(FetchSettings(allow_private_networks=True)) as f:
        assert f.fetch(url)[:2] == b"\xff\xd8"
    with guarded(allowed_networks=["127.0.0.1/32"]) as f:
        assert f.fetch(url)[:2] == b"\xff\xd8"


def test_a_name_resolving_to_loopback_is_refused(image_server: ImageServer) -> None:
    url = image_server.url(PHOTO).replace("127.0.0.1", "localhost")
    with guarded() as f:
        err = refusal(f, url)
    assert err.code == ErrorCode.INVALID_INPUT
    assert "localhost resolves to" in err.message and "loopback" in err.message


def test_metadata_address_and_ipv6_loopback_refused_without_connecting() -> None:
    with guarded() as f:
        meta = refusal(f, "http://169.254.169.254/latest/meta-data/")
        six = refusal(f, "http://[::1]:9/x.jpg")
        mapped = refusal(f, "http://[::ffff:127.0.0.1]:9/x.jpg")
    assert "169.254.169.254" in meta.message and "link-local" in meta.message
    assert "::1" in six.message and "loopback" in six.message
    assert "loopback" in mapped.message


def test_local_files_refused_when_not_allowed(tmp_path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8")
    f = guarded(allow_local=False)
    for source in (str(photo), f"file://{photo}"):
        err = refusal(f, source)
        assert err.code == ErrorCode.INVALID_INPUT
        assert "only http(s)" in err.message


class _Redirector(BaseHTTPRequestHandler):
    target = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirector(image_server: ImageServer) -> Iterator[str]:
    """A server on 127.0.0.1 that redirects to the photo server under 127.0.0.2."""
    handler = type("R", (_Redirector,), {"target": image_server.url(PHOTO)})
    handler.target = handler.target.replace("127.0.0.1", "127.0.0.2")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/go"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_redirect_to_a_refused_address_is_refused(redirector: str) -> None:
    """The first hop (127.0.0.1) is allowed by CIDR; the redirect target (127.0.0.2) is not."""
    with guarded(allowed_networks=["127.0.0.1/32"]) as f:
        err = refusal(f, redirector)
    assert err.code == ErrorCode.DOWNLOAD_FAILED
    assert "redirect" in err.message and "127.0.0.2" in err.message
    # With the whole loopback block allowed, the redirect is followed: the guard lets it through
    # and the connection itself fails, as nothing listens on 127.0.0.2 (the server binds .1).
    with guarded(allowed_networks=["127.0.0.0/8"], retries=0) as f:
        followed = refusal(f, redirector)
    assert followed.code == ErrorCode.DOWNLOAD_FAILED
    assert "Network error" in followed.message and "Refused" not in followed.message


def test_bad_allowed_network_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="not-a-cidr"):
        FetchSettings(allowed_networks=["not-a-cidr"])
