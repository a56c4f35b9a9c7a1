"""The token holder and JWT expiry reading; the redacting log processor."""

from __future__ import annotations

import base64
import io
import json
import sys

import pytest
import structlog

from khqrpay.bakong.token import BakongToken, TokenFormatError, read_jwt_expiry_ms
from khqrpay.logging import REDACTED, configure_logging, get_logger, register_secret


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    # These tests point structlog at throwaway streams; leave the defaults for other tests.
    structlog.reset_defaults()


def jwt(payload: object, *, header: object | None = None) -> str:
    def part(value: object) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


def test_exp_is_read_from_the_payload_in_milliseconds() -> None:
    assert read_jwt_expiry_ms(jwt({"exp": 1803427200, "iat": 1795651200})) == 1803427200000
    assert read_jwt_expiry_ms(jwt({"exp": 1803427200.5})) == 1803427200500


def test_payloads_needing_base64_padding_are_read() -> None:
    for extra in range(4):  # every padding length
        token = jwt({"exp": 1803427200, "d": "x" * extra})
        assert read_jwt_expiry_ms(token) == 1803427200000


@pytest.mark.parametrize(
    ("token", "rule"),
    [
        ("not-a-jwt", "three dot-separated parts"),
        ("a..c", "three dot-separated parts"),
        ("a.!!!.c", "base64url JSON"),
        ("a." + base64.urlsafe_b64encode(b"not json").decode() + ".c", "base64url JSON"),
        (jwt([1, 2]), "not a JSON object"),
        (jwt({"iat": 1}), "no numeric exp"),
        (jwt({"exp": "1803427200"}), "no numeric exp"),
        (jwt({"exp": True}), "no numeric exp"),
    ],
)
def test_unreadable_tokens_say_why_without_quoting_the_token(token: str, rule: str) -> None:
    with pytest.raises(TokenFormatError, match=rule) as error:
        read_jwt_expiry_ms(token)
    assert token not in str(error.value)


def test_the_holder_never_shows_its_value() -> None:
    secret = jwt({"exp": 1803427200})
    token = BakongToken(f"  {secret}\n")
    assert token.reveal() == secret
    assert secret not in repr(token)
    assert secret not in str(token)
    assert secret not in f"{token}"
    assert token.expires_at_ms() == 1803427200000


@pytest.mark.parametrize("value", ["", "   ", "abc def", "abc\x00def"])
def test_the_holder_refuses_empty_or_malformed_values(value: str) -> None:
    with pytest.raises(ValueError, match="Bakong token"):
        BakongToken(value)


def render(**event: object) -> str:
    stream = io.StringIO()
    configure_logging("DEBUG", json_output=True, stream=stream)
    get_logger("test").info("event", **event)
    return stream.getvalue()


def test_log_values_under_secret_keys_are_redacted() -> None:
    line = json.loads(
        render(token="plain-value-1", headers={"Authorization": "x", "accept": "json"}, n=3)
    )
    assert line["token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert line["n"] == 3
    assert line["logger_name"] == "test"


def test_jwts_bearer_credentials_and_registered_secrets_are_redacted_anywhere() -> None:
    token = jwt({"exp": 1803427200})
    register_secret("opaque-secret-value-42")
    output = render(
        message=f"failed with {token} inside",
        header="Bearer abc.def-123",
        nested=["x", {"deep": "prefix opaque-secret-value-42 suffix"}],
    )
    assert token not in output
    assert "abc.def-123" not in output
    assert "opaque-secret-value-42" not in output
    line = json.loads(output)
    assert line["message"] == f"failed with {REDACTED} inside"
    assert line["nested"] == ["x", {"deep": f"prefix {REDACTED} suffix"}]


def test_tracebacks_are_redacted_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    token = jwt({"exp": 1})
    try:
        raise RuntimeError(f"boom {token}")
    except RuntimeError:
        get_logger("test").exception("crashed")
    assert "boom" in stream.getvalue()
    assert token not in stream.getvalue()


def test_the_level_filters_and_an_unknown_level_is_refused() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream)
    get_logger("test").info("quiet")
    get_logger("test").warning("loud")
    assert "quiet" not in stream.getvalue()
    assert "loud" in stream.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("CHATTY")


def test_get_logger_configures_structlog_when_nobody_did(monkeypatch: pytest.MonkeyPatch) -> None:
    structlog.reset_defaults()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    get_logger("first")
    assert structlog.is_configured()


def test_default_log_stream_is_stderr_at_write_time_not_at_configure_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A CLI runner swaps sys.stderr and closes its stand-in: logging must follow, not crash."""
    stand_in = io.StringIO()
    real = sys.stderr
    sys.stderr = stand_in
    try:
        configure_logging("INFO")
    finally:
        sys.stderr = real
    stand_in.close()
    get_logger("test").info("after the swap")
    assert "after the swap" in capsys.readouterr().err
    structlog.reset_defaults()
