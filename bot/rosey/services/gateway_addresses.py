"""Which addresses the HTTP gateway connects to, and the one DNS look-up per hop it trusts.

The gateway resolves a host once, checks every address it got, and connects to the first of
those very addresses (the URL it sends carries the address; the ``Host`` header and TLS's SNI
carry the name). There is no second look-up for DNS rebinding to change the answer between
the check and the connection.

Refused unless a rule says ``allow_private = true``: loopback, private (RFC 1918, IPv6 ULA),
link-local, carrier-grade NAT (100.64.0.0/10) and every other address that is not globally
routable. Refused always: unspecified (``0.0.0.0``, ``::``), multicast and the cloud metadata
services' addresses. IPv4 addresses inside IPv6 ones (``::ffff:127.0.0.1``, 6to4, Teredo,
NAT64 ``64:ff9b::/96``) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

__all__ = ["METADATA_ADDRESSES", "Address", "Resolver", "resolve", "why_refused"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``, in the order to try them; the default is the system's resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def why_refused(address: Address, *, allow_private: bool) -> str | None:
    """Why the gateway will not connect to ``address`` (a few words), or None when it may."""
    inner = _embedded_ipv4(address)
    for candidate in (inner, address):
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_multicast:
            return "a multicast address"
    if allow_private:
        return None
    for candidate in (inner, address):
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if isinstance(candidate, ipaddress.IPv4Address) and candidate in _CGNAT:
            return "a carrier-grade NAT address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "an address that is not globally routable"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` for a TCP connection, in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
