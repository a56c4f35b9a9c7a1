"""English and Khmer: gettext catalogues (`locale/<lang>/LC_MESSAGES/messages.po`, compiled with
Babel when the app starts), the language of the current request, dates and money for people.

Times are shown in Cambodia's time zone (Asia/Phnom_Penh, UTC+7, no daylight saving).
"""

from __future__ import annotations

import contextvars
import gettext
import io
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Protocol
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from khqrpay.clock import ms_to_datetime
from khqrpay.money import Currency, Money

LANGUAGES = ("en", "km")
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "lang"
CAMBODIA = ZoneInfo("Asia/Phnom_Penh")
DOMAIN = "messages"

_language: contextvars.ContextVar[str] = contextvars.ContextVar("language", default="en")


def set_language(language: str) -> contextvars.Token[str]:
    return _language.set(language if language in LANGUAGES else DEFAULT_LANGUAGE)


def reset_language(token: contextvars.Token[str]) -> None:
    _language.reset(token)


def current_language() -> str:
    return _language.get()


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The remembered choice, else the browser's first language we speak, else English."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of `language` (English is the source text)."""
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    source = resources.files("khqrpay.web").joinpath(f"locale/{language}/LC_MESSAGES/{DOMAIN}.po")
    with source.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _(message: str) -> str:
    """`message` in the current request's language."""
    return translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return translations(current_language()).ngettext(singular, plural, count)


class Named(Protocol):
    """A product or an order line: its English name and, maybe, its Khmer one."""

    @property
    def name(self) -> str: ...

    @property
    def name_km(self) -> str | None: ...


def local_name(item: Named) -> str:
    """The name to show a reader of the current language: the Khmer one to Khmer readers when
    there is one, the English one otherwise."""
    if current_language() == "km" and item.name_km:
        return item.name_km
    return item.name


def local_time(moment: int | datetime | None, pattern: str = "d MMM y, HH:mm") -> str:
    """A time in Cambodia, written the way the current language writes it."""
    if moment is None:
        return ""
    when = ms_to_datetime(moment) if isinstance(moment, int) else moment
    return format_datetime(when, pattern, tzinfo=CAMBODIA, locale=current_language())


def money(value: Money) -> str:
    """`12,000 ៛` and `$1.50`, as shops in Cambodia write prices."""
    return value.display()


def currency_symbol(currency: Currency) -> str:
    return "៛" if currency is Currency.KHR else "$"
