"""The guard against server-side request forgery: which URLs and addresses webhooks may go to."""

from __future__ import annotations

import ipaddress

import pytest

from khqrpay.outbound.addresses import (
    AddressRefused,
    IPAddress,
    checked_address,
    parse_webhook_url,
    refusal,
    refuse_local_name,
)


class FakeResolver:
    """Answers from a script: each call takes the next answer."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        return [ipaddress.ip_address(a) for a in self.answers.pop(0)]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("::ffff:192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a private address"),
        ("100.64.0.1", "not a public address"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_only_public_addresses_take_webhooks_unasked(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com", "only http and https"),
        ("example.com/hook", "only http and https"),
        ("https://user:pw@example.com/", "no user name or password"),
        ("https:///path", "needs a host"),
        ("https://example.com:99999/", "not a URL"),
        ("https://exa mple.com/", "no spaces"),
        ("", "1 to 2000 characters"),
        ("https://example.com/" + "a" * 2000, "1 to 2000 characters"),
    ],
)
def test_urls_that_are_not_plain_http_or_https_are_refused(url: str, message: str) -> None:
    with pytest.raises(AddressRefused, match=message):
        parse_webhook_url(url)


def test_a_url_keeps_its_host_and_default_port() -> None:
    url = parse_webhook_url("HTTPS://Hooks.Example.com/k?x=1")
    assert (url.scheme, url.host, url.port) == ("https", "hooks.example.com", 443)
    assert parse_webhook_url("http://[::1]:8080/").host == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]:80/",
        "http://10.1.2.3/",
        "http://localhost:8000/",
        "http://api.localhost/",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_an_address_surely_not_public_is_refused_when_added_unless_allowed(url: str) -> None:
    with pytest.raises(AddressRefused, match="--allow-private"):
        refuse_local_name(parse_webhook_url(url), allow_private=False)
    refuse_local_name(parse_webhook_url(url), allow_private=True)


def test_a_public_name_is_left_to_the_check_at_each_try() -> None:
    refuse_local_name(parse_webhook_url("https://hooks.example.com/"), allow_private=False)


async def test_a_host_is_refused_when_any_of_its_addresses_is_not_public() -> None:
    url = parse_webhook_url("https://hooks.example.com/in")
    resolver = FakeResolver(["93.184.216.34", "10.0.0.7"])
    with pytest.raises(AddressRefused, match=r"hooks\.example\.com \(10\.0\.0\.7\) is a private"):
        await checked_address(url, resolver=resolver, allow_private=False)
    assert resolver.asked == [("hooks.example.com", 443)]


async def test_the_address_checked_is_the_one_returned_and_asked_once() -> None:
    url = parse_webhook_url("https://hooks.example.com/in")
    resolver = FakeResolver(["93.184.216.34"], ["127.0.0.1"])
    address = await checked_address(url, resolver=resolver, allow_private=False)
    assert str(address) == "93.184.216.34"
    assert len(resolver.asked) == 1
    # The next try resolves again, and a changed answer is checked again.
    with pytest.raises(AddressRefused, match="loopback"):
        await checked_address(url, resolver=resolver, allow_private=False)


async def test_an_owner_may_allow_private_addresses() -> None:
    url = parse_webhook_url("http://pos.shop.lan:8080/in")
    resolver = FakeResolver(["192.168.1.20"])
    address = await checked_address(url, resolver=resolver, allow_private=True)
    assert str(address) == "192.168.1.20"


async def test_a_literal_address_is_not_resolved() -> None:
    resolver = FakeResolver()
    url = parse_webhook_url("http://93.184.216.34/in")
    assert str(await checked_address(url, resolver=resolver, allow_private=False)) == (
        "93.184.216.34"
    )
    assert resolver.asked == []


async def test_a_host_with_no_address_is_a_failed_try() -> None:
    url = parse_webhook_url("https://nowhere.example/")
    with pytest.raises(OSError, match="no address"):
        await checked_address(url, resolver=FakeResolver([]), allow_private=False)
