"""The optional `sourceInfo` of a deep link: the app that sends the customer to the banking app."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from khqrpay.bakong.errors import BakongInputError


def require_url(field: str, value: str, *, schemes: tuple[str, ...] = ("https", "http")) -> str:
    cleaned = value.strip()
    parts = urlsplit(cleaned)
    if (
        parts.scheme.lower() not in schemes
        or not parts.netloc
        or any(ch.isspace() for ch in cleaned)
    ):
        raise BakongInputError(field, f"must be an absolute {'/'.join(schemes)} URL")
    return cleaned


@dataclass(frozen=True, slots=True)
class DeeplinkSource:
    """All three fields are required when sourceInfo is sent at all."""

    app_icon_url: str
    app_name: str
    app_deeplink_callback: str

    def __post_init__(self) -> None:
        require_url("app_icon_url", self.app_icon_url)
        if not self.app_name.strip() or len(self.app_name) > 100:
            raise BakongInputError("app_name", "must be 1 to 100 characters")
        callback = urlsplit(self.app_deeplink_callback.strip())
        # An app callback is usually a custom scheme (`myshop://paid`), so any scheme is fine.
        if not callback.scheme or any(ch.isspace() for ch in self.app_deeplink_callback.strip()):
            raise BakongInputError("app_deeplink_callback", "must be a URL with a scheme")

    def as_json(self) -> dict[str, str]:
        return {
            "appIconUrl": self.app_icon_url.strip(),
            "appName": self.app_name.strip(),
            "appDeepLinkCallback": self.app_deeplink_callback.strip(),
        }
