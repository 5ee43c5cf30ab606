"""Loopback, ports, and whether a URL reaches beyond this network: the network facts AgentFleet needs."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now (it may be taken before it is used)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def non_public_address(url: str) -> str | None:
    """The first address `url`'s host resolves to that is loopback, private, link-local or multicast
    (not a public one), or None when every address is public. OSError (or UnicodeError) when the
    host does not resolve. What a URL given from outside must not reach unless configuration allows."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    for info in socket.getaddrinfo(parts.hostname or "", parts.port or default, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            return str(address)
    return None
