"""Refuse downloads from loopback, link-local, private and other non-public addresses.

The check runs where the socket is opened (an httpcore network backend), not on the URL text: the
backend resolves the host itself, vets every address it got, and connects to a vetted address.
So a DNS name that resolves to 127.0.0.1, a rebinding DNS answer, or a redirect to
http://169.254.169.254/ (cloud metadata) are all caught. TLS still names the original host (SNI and
certificate checks), because httpcore starts TLS with the URL's host, not the socket's address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import typing
from collections.abc import Iterable

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class AddressRefused(Exception):
    """A connection to a non-public address was refused; carries the host, address and why."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"{host} resolves to {address}, a {reason} address; downloads from such addresses "
            "are not allowed here"
            if host != address
            else f"{address} is a {reason} address; downloads from such addresses are not "
            "allowed here"
        )
        self.host = host
        self.address = address
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), which is what gets reached."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why this address is not public (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "link-local"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = refusal_reason(inner)
            return f"{reason} (inside the IPv6 address {ip})" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def parse_networks(texts: Iterable[str]) -> list[IPNetwork]:
    """CIDR blocks (or single addresses) exempted from the check; raises ValueError if malformed."""
    return [ipaddress.ip_network(t.strip(), strict=False) for t in texts]


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's sync backend, but it only connects to public addresses it resolved itself
    (or to addresses inside `allowed`, networks an operator exempted)."""

    def __init__(self, allowed: Iterable[IPNetwork] = ()) -> None:
        self.allowed = list(allowed)

    def _exempt(self, ip: IPAddress) -> bool:
        inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (inner is not None and inner in net) for net in self.allowed)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0])
            reason = None if self._exempt(ip) else refusal_reason(ip)
            if reason is not None:
                # One non-public answer refuses the host: mixed answers are a rebinding trick.
                raise AddressRefused(host.strip("[]"), str(ip), reason)
            if str(ip) not in addresses:
                addresses.append(str(ip))
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose connection pool uses `GuardedBackend`.

    httpx does not take a network backend as an argument, so the pool is rebuilt here with the
    same settings plus the backend. No proxy is used: a proxy would connect on our behalf and
    bypass the check.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        allowed: Iterable[IPNetwork] = (),
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(limits=limits, verify=verify)
        ssl_context = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        )
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowed),
        )
