"""Which network addresses the fetcher may connect to.

Two rules, applied to every address a host name resolves to, at the moment of connecting:

- **never**: link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata services
  (169.254.169.254, fd00:ec2::254, ...), whatever ``ALLOW_PRIVATE_HOSTS`` says and whatever host is
  exempted by name. No news source lives there, and a feed that redirects there is stealing the
  machine's cloud credentials. Multicast is refused too: TCP cannot use it.
- **unless private hosts are allowed**: every other non-public address (loopback, RFC 1918, CGNAT,
  unique-local, reserved).

An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:a9fe:a9fe``, IPv4-compatible
``::a9fe:a9fe``, NAT64 ``64:ff9b::/96``, 6to4, Teredo) is judged by that IPv4 address too: the
operating system or a gateway turns it into a connection to the IPv4 address.

Host names are resolved with ``socket.getaddrinfo``, the call ``socket.create_connection`` makes, so
"2852039166", "0xa9fea9fe", "169.254.43518" and "0xa9.0xfe.0xa9.0xfe" mean here exactly what they mean
to the socket: 169.254.169.254.
"""

from __future__ import annotations

import ipaddress
import socket

from pipeline.errors import FetchError, RefusedURL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services. 169.254.169.254 (AWS, GCP, Azure, OCI, DigitalOcean...) is already
# link-local; the others are not, and two are not even private: Alibaba Cloud's 100.100.100.200 sits
# in CGNAT space and Azure's WireServer 168.63.129.16 is a public address.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "fd20:ce::254", "100.100.100.200", "168.63.129.16")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (mapped, compatible, NAT64, 6to4, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    value = int(address)
    if address in _NAT64 or 1 < value < 1 << 32:  # NAT64, or the deprecated ::a.b.c.d form
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why the fetcher must not connect to ``address``, or None when it may."""
    inner = embedded_ipv4(address)
    shown = f"{address} (that is {inner})" if inner is not None else str(address)
    for candidate in (address, inner):
        if candidate is None:
            continue
        if candidate in METADATA:
            return f"non-public address {shown}: a cloud metadata service, never fetched"
        if candidate.is_link_local:
            return f"non-public address {shown}: link-local, never fetched"
        if candidate.is_multicast:
            return f"non-public address {shown}: multicast, never fetched"
        if not allow_private and not candidate.is_global:
            return f"non-public address {shown} (set ALLOW_PRIVATE_HOSTS=1 to allow)"
    return None


def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``host`` as the socket would and return its addresses, in the resolver's order, if
    every one of them is allowed.

    A host with one forbidden address among allowed ones is refused as a whole: a name that answers
    both a public and a metadata address is hostile, and connecting to "the good one" would only
    wait for the resolver to reorder its answer.

    Raises:
        RefusedURL: an address the host resolves to is not allowed.
        FetchError: the host does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:  # gaierror, and the idna codec on labels like "a..b"
        raise FetchError(f"DNS lookup failed for {host}: {err}") from err
    found: list[str] = []
    for info in infos:
        text = str(info[4][0])
        address = ipaddress.ip_address(text.split("%")[0])  # a scope ("fe80::1%eth0") names no other host
        why = refusal(address, allow_private=allow_private)
        if why:
            raise RefusedURL(f"{host} resolves to {why}")
        if text not in found:
            found.append(text)
    if not found:
        raise FetchError(f"DNS lookup for {host} returned no address")
    return found
