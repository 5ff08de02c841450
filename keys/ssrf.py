"""Which upstream base URLs Gatehouse will call.

Only http(s) URLs whose host resolves exclusively to public addresses, unless the
operator allow-lists hosts or networks in GATEHOUSE_UPSTREAM_ALLOWLIST (comma-separated
host names and CIDRs, e.g. "127.0.0.1/32,vllm.internal"). Loopback, private,
link-local (cloud metadata lives at 169.254.169.254), multicast and reserved
addresses are refused otherwise.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from config.errors import ValidationFailed

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"}


def _allowlist() -> tuple[set[str], list]:
    hosts, networks = set(), []
    for entry in settings.GATEHOUSE_UPSTREAM_ALLOWLIST:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower())
    return hosts, networks


def _is_public(address) -> bool:
    return not (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def base_url_validate(url: str, *, field: str = "base_url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("Use an http:// or https:// URL with a host.", field=field)
    if parts.username or parts.password:
        raise ValidationFailed("Credentials do not belong in the URL; use a provider credential.", field=field)
    host = parts.hostname.lower()
    allowed_hosts, allowed_networks = _allowlist()
    if host in allowed_hosts:
        return url
    if host in METADATA_HOSTS:
        raise ValidationFailed("Cloud metadata endpoints are never allowed as upstreams.", field=field)
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValidationFailed(f"The host {host!r} does not resolve.", field=field) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if any(address in network for network in allowed_networks):
            continue
        if not _is_public(address):
            raise ValidationFailed(
                f"The host {host!r} resolves to a non-public address ({address}); "
                "add it to GATEHOUSE_UPSTREAM_ALLOWLIST if this upstream is yours.",
                field=field,
            )
    return url
