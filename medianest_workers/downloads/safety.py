"""What a download may touch: which URLs (SSRF guard) and which paths (the user's folder).

A playlist URL's shape (http(s), a host, no user:password@) is checked at enqueue (the
payload of downloads/tasks.py: a 422 naming `payload.url`); `check_playlist_url`, in the
worker before anything is fetched, checks its host against DOWNLOAD_ALLOWED_HOSTS and its
addresses. Every request yt-dlp then makes (the playlist page, each redirect,
each media and thumbnail URL) goes through `check_fetch_url` (downloads/ytdlp.py's request
handler), and every connection it opens has its peer address checked too (DNS rebinding).

Addresses (`NetworkPolicy`): public unicast ones are fine; cloud metadata addresses never
are; private, loopback, link-local, multicast and reserved ones are refused unless
DOWNLOAD_ALLOW_PRIVATE_NETWORKS is true, or the address lies in one of
DOWNLOAD_ALLOWED_NETWORKS (a homelab's mirror, without opening every private network).

File names come from yt-dlp's sanitizer, and every file is checked to lie, real path against
real path, inside the user's folder.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from medianest_workers.platform.errors import PermanentError
from medianest_workers.settings import Settings, get_settings

ALLOWED_SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba): never fetched.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class BlockedDestinationError(PermanentError):
    """A URL whose scheme, host or address a download may not fetch."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"blocked destination {shown(url)}: {reason}")
        self.reason = reason


class PathEscapeError(PermanentError):
    """A file name that would land outside the user's download folder."""


def shown(url: str) -> str:
    """The URL without its query or credentials (never log a signed media URL whole)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = _port(url)
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path[:80]}"


def _port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_public_address(address: IPAddress) -> bool:
    """Whether `address` is a globally routable unicast address (IPv4-mapped ones unwrapped)."""
    address = _unwrap(address)
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and address not in METADATA_ADDRESSES
    )


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses a download may connect to (see the module docstring)."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None when it is fine."""
        address = _unwrap(address)
        if address in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if is_public_address(address):
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        if self.allow_private:
            return None
        return f"{address} is a private, loopback, link-local or reserved address"


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (`192.168.1.0/24`, `127.0.0.1`) as networks; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network (like 192.168.1.0/24)") from None
    return tuple(networks)


def network_policy(settings: Settings | None = None) -> NetworkPolicy:
    """The policy of DOWNLOAD_ALLOW_PRIVATE_NETWORKS and DOWNLOAD_ALLOWED_NETWORKS."""
    s = settings or get_settings()
    return NetworkPolicy(
        allow_private=s.download_allow_private_networks,
        allowed_networks=parse_networks(s.download_allowed_networks),
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal, decimal or octal too, is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """`host` is one of `allowed_hosts` or a subdomain of one (case-insensitive)."""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        allowed = entry.lower().strip().rstrip(".")
        if allowed and (host == allowed or host.endswith("." + allowed)):
            return True
    return False


def check_fetch_url(url: str, *, policy: NetworkPolicy) -> None:
    """Raise BlockedDestinationError unless yt-dlp may fetch `url` (scheme and addresses)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedDestinationError(url, f"scheme {scheme or '(none)'!r} is not http(s)")
    host = parts.hostname
    if not host:
        raise BlockedDestinationError(url, "no host")
    port = _port(url) or (443 if scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise BlockedDestinationError(url, f"host does not resolve ({exc})") from None
    for address in addresses:
        reason = policy.refusal(address)
        if reason:
            raise BlockedDestinationError(url, f"{host} resolves to {reason}")


def check_peer(address: str, *, policy: NetworkPolicy) -> None:
    """Raise BlockedDestinationError if a connection's peer `address` is refused."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    reason = policy.refusal(parsed)
    if reason:
        raise BlockedDestinationError(f"tcp://{parsed}/", f"connected to {reason}")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_playlist_url(
    url: str, *, allowed_hosts: Iterable[str], policy: NetworkPolicy, resolve_host: bool = True
) -> str:
    """The URL, stripped, if a download may start from it; else ValueError saying why.

    Refused: anything but http(s) (`file:`, `ytsearch:`, bare words), hosts off the
    allow-list, user:password@ URLs, refused addresses. `resolve_host=False` (at enqueue)
    checks an IP literal but does not ask DNS; the worker does, and checks every connection.
    """
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES or not parts.netloc or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL (no file:, ytsearch: or bare words)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")
    if _port(url) is None and ":" in parts.netloc.rsplit("]", 1)[-1]:
        raise ValueError("has an invalid port")
    host = parts.hostname
    allowed = list(allowed_hosts)
    if not host_allowed(host, allowed):
        raise ValueError(
            f"host {host!r} is not allowed (DOWNLOAD_ALLOWED_HOSTS: {', '.join(allowed)})"
        )
    literal = _ip_literal(host)
    if literal is not None:
        reason = policy.refusal(literal)
        if reason:
            raise ValueError(f"host {reason}")
    elif resolve_host:
        try:
            check_fetch_url(url, policy=policy)
        except BlockedDestinationError as exc:
            raise ValueError(exc.reason) from None
    return url


def contained(path: str | os.PathLike[str], folder: Path) -> Path:
    """`path`'s real path, if it lies inside `folder`'s real path; else PathEscapeError."""
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(folder))
    if real != root and root not in real.parents:
        raise PathEscapeError(f"{os.fspath(path)!r} is outside the download folder")
    return real
