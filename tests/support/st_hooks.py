"""Schemathesis hooks (loaded by SCHEMATHESIS_HOOKS) that keep generated tasks off the network.

Any generated avatar URL with an http(s) scheme is pointed at 127.0.0.1:9 (discard port) before
the request is sent, keeping its path so inputs stay varied. The server under test refuses
loopback addresses (its SSRF guard is on), so no task downloads anything and no DNS query for a
made-up host name ever leaves the machine. Other strings (paths, file://, junk) go as generated.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import schemathesis


def _tame(url: object) -> object:
    if not isinstance(url, str):
        return url
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return url
    if scheme in ("http", "https"):
        return f"http://127.0.0.1:9/{quote(url, safe='')[:200]}"
    return url


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("users"), list):
        for user in body["users"]:
            if isinstance(user, dict) and "avatar_image_url" in user:
                user["avatar_image_url"] = _tame(user["avatar_image_url"])
