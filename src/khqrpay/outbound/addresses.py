"""Where a webhook may be sent: the guard against server-side request forgery.

Only `http` and `https` URLs, with no credentials in them. Unless the owner added the endpoint
with `--allow-private`, the host must resolve only to public addresses: never loopback,
link-local (cloud metadata services live there), private, shared, multicast, reserved or
unspecified ones, nor an IPv4 address of those kinds written as IPv6. The host is resolved once
per try and the connection is made to the address that was checked (`webhook_http` pins it), so a
DNS answer that changes between the check and the connection cannot reach a private address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], "str | None"]

MAX_URL_LENGTH = 2000
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(ValueError):
    """A URL or address webhooks may not go to; the message says why, for the owner."""


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    url: str
    scheme: str
    host: str  # lower case; an IPv6 literal without its brackets
    port: int

    @property
    def literal_address(self) -> IPAddress | None:
        """The host when it is an IP address, not a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_webhook_url(url: str) -> WebhookUrl:
    """`url` if webhooks may be sent to it at all; `AddressRefused` says what is wrong."""
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH:
        raise AddressRefused(f"a webhook URL has 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise AddressRefused("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise AddressRefused(f"only http and https URLs take webhooks, not {scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("a webhook URL carries no user name or password")
    if not parts.hostname:
        raise AddressRefused("a webhook URL needs a host")
    return WebhookUrl(
        url=text, scheme=scheme, host=parts.hostname, port=port or DEFAULT_PORTS[scheme]
    )


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to `address` without the owner's leave, or None (public)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def refuse_local_name(url: WebhookUrl, *, allow_private: bool) -> None:
    """Refuse, when the endpoint is added, what is surely not public: an IP address that is not,
    or `localhost`. Other names are checked at every try, once resolved."""
    if allow_private:
        return
    literal = url.literal_address
    reason = refusal(literal) if literal is not None else None
    name = url.host.rstrip(".")
    # Names that mean this machine whatever DNS says (RFC 6761).
    if reason is None and (name == "localhost" or name.endswith(".localhost")):
        reason = "this machine"
    if reason is not None:
        raise AddressRefused(
            f"{url.host} is {reason}: add the endpoint with --allow-private to deliver there"
        )


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses `host` has now; OSError when it has none or cannot be resolved."""
        ...


class SystemResolver:
    """The system's resolver (getaddrinfo), off the event loop."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        answers = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in answers:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


async def checked_address(
    url: WebhookUrl,
    *,
    resolver: Resolver,
    allow_private: bool,
    policy: AddressPolicy = refusal,
) -> IPAddress:
    """The one address to connect to for `url`: its host resolved once, every address it has
    checked (one refused address refuses the host: it may be the one a later answer gives)."""
    literal = url.literal_address
    addresses = [literal] if literal is not None else await resolver.resolve(url.host, url.port)
    if not addresses:
        raise OSError(f"{url.host} has no address")
    if not allow_private:
        for address in addresses:
            reason = policy(address)
            if reason is not None:
                shown = url.host if literal is not None else f"{url.host} ({address})"
                raise AddressRefused(f"{shown} is {reason}")
    return addresses[0]
