"""Whether a host names this machine: where lockstep allows plain http, unencrypted admin
connections and cookies without Secure (the traffic never leaves the machine)."""

from __future__ import annotations

from ipaddress import ip_address


def is_loopback(host: str | None) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (bracketed or not)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
