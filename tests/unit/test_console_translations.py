"""Every English string of the staff console has its Khmer translation, and each translation
keeps the placeholders of its English."""

from __future__ import annotations

import re
from collections import Counter
from importlib import resources

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

WEB = resources.files("khqrpay.web")
METHODS = [("templates/admin/**.html", "jinja2.ext:babel_extract"), ("admin/**.py", "python")]
OPTIONS = {"templates/admin/**.html": {"extensions": "jinja2.ext.i18n"}}
PLACEHOLDER = re.compile(r"{\w+}|%\(\w+\)\w|%%")


def console_messages() -> set[str]:
    found = extract_from_dir(str(WEB), method_map=METHODS, options_map=OPTIONS)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def test_every_console_string_is_in_khmer_with_its_placeholders() -> None:
    with WEB.joinpath("locale/km/LC_MESSAGES/messages.po").open("rb") as po_file:
        catalog = read_po(po_file, locale="km")
    messages = console_messages()
    assert len(messages) > 200  # the extraction found the templates
    missing = sorted(m for m in messages if m not in catalog or not catalog[m].string)
    assert missing == []
    for message in messages:
        translated = catalog[message].string
        khmer = translated if isinstance(translated, str) else translated[0]
        assert sorted(PLACEHOLDER.findall(khmer)) == sorted(PLACEHOLDER.findall(message)), message


def test_no_message_is_defined_twice() -> None:
    """gettext's msgfmt refuses a catalogue that defines a msgid twice, and Babel silently keeps
    the last definition, which would drop a plural entry's forms."""
    text = WEB.joinpath("locale/km/LC_MESSAGES/messages.po").read_text(encoding="utf-8")
    # An entry's msgid may continue on the following quoted lines.
    msgids = re.findall(r'^msgid ("(?:[^"\\]|\\.)*"(?:\n"(?:[^"\\]|\\.)*")*)', text, re.MULTILINE)
    counts = Counter(msgids)
    assert len(counts) > 200
    assert [msgid for msgid, count in counts.items() if count > 1] == []
