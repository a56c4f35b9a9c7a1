"""Every English string a customer can see (the shop's templates and endpoints, the shared
layout and error pages) has a Khmer translation carrying the same placeholders."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

WEB = Path(str(resources.files("khqrpay.web")))
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|\{[a-z_]+\}")


def _customer_strings() -> set[str]:
    templates = [*(WEB / "templates" / "shop").glob("*.html"), *(WEB / "templates").glob("*.html")]
    code = [*(WEB / "shop").glob("*.py"), WEB / "app.py"]
    found: set[str] = set()
    for path, method in [(p, "jinja2") for p in templates] + [(p, "python") for p in code]:
        options = {"extensions": "jinja2.ext.i18n"} if method == "jinja2" else {}
        for _line, message, _comments, _context in extract_from_file(
            method, str(path), keywords={"_": None}, options=options
        ):
            found.add(message)
    return found


def test_every_string_a_customer_sees_is_in_khmer_with_the_same_placeholders() -> None:
    with (WEB / "locale" / "km" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalogue = read_po(po, locale="km")
    strings = _customer_strings()
    assert len(strings) > 100
    untranslated = sorted(s for s in strings if not (catalogue.get(s) and catalogue.get(s).string))
    assert untranslated == []
    for english in strings:
        khmer = catalogue.get(english).string
        assert sorted(PLACEHOLDER.findall(khmer)) == sorted(PLACEHOLDER.findall(english)), english
