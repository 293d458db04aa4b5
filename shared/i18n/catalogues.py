"""Gettext catalogues: one ``.po`` per language under ``shared/locale``, compiled to ``.mo``
when Attune is installed (``scripts/bootstrap`` for a checkout, the package build for the
wheel and the image); nothing compiled is kept in the repository.

English is the source language: its strings are the message ids, so it needs no catalogue.
A translation missing from a catalogue falls back to the English text; the catalogue tests
(``tests/unit/test_i18n_catalogues.py``) make sure none is missing.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections.abc import Mapping
from pathlib import Path

from babel import Locale

from shared.i18n.languages import ENGLISH, LANGUAGES, Language

DOMAIN = "attune"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


class CataloguesMissing(RuntimeError):
    """A language's compiled catalogue is not installed (run scripts/bootstrap)."""


def catalogue_path(lang: Language, suffix: str = ".mo") -> Path:
    return LOCALE_DIR / lang.babel / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


@functools.cache
def translations(lang: Language) -> gettext.NullTranslations:
    """The compiled catalogue of ``lang`` (English: the source strings themselves)."""
    if lang == ENGLISH:
        return gettext.NullTranslations()
    path = catalogue_path(lang)
    try:
        with path.open("rb") as fp:
            return gettext.GNUTranslations(fp)
    except FileNotFoundError:
        raise CataloguesMissing(
            f"{path} is missing: the catalogues are compiled at install (scripts/bootstrap, "
            "or the package build)"
        ) from None


def load_all() -> None:
    """Load every language's catalogue now: a service fails at start, not at a first page."""
    for lang in LANGUAGES:
        translations(lang)


class Text(str):
    """English text that remembers its message id and values, so that the edge that shows it
    can show it in the reader's language. Everywhere else it is the plain English string
    (logs, tests, JSON for English readers).

    Mark a message with ``_("The LMS sent {name}.", name=value)``: the extraction collects
    the id, ``{name}`` placeholders are filled after translating.
    """

    msgid: str
    params: Mapping[str, object]

    def __new__(cls, msgid: str, /, **params: object) -> Text:
        self = super().__new__(cls, msgid.format(**params) if params else msgid)
        self.msgid = msgid
        self.params = params
        return self


_ = Text


def translate(text: str, lang: Language) -> str:
    """``text`` in ``lang``: a ``Text`` by its id and values (values that are ``Text`` are
    translated too); a plain string by itself as the id (constants); unknown ids unchanged."""
    tr = translations(lang)
    if isinstance(text, Text):
        params = {
            k: translate(v, lang) if isinstance(v, Text) else v for k, v in text.params.items()
        }
        message = tr.gettext(text.msgid)
        return message.format(**params) if params else message
    return tr.gettext(text) if text else text


@functools.cache
def plural_samples(lang: Language) -> dict[str, int]:
    """One number for each CLDR plural category of ``lang`` (what ``Intl.PluralRules`` in the
    browser answers), so a plural message can be sent as one string per category."""
    rule = Locale.parse(lang.babel).plural_form
    samples: dict[str, int] = {}
    for n in (*range(0, 201), 1_000, 1_000_000):  # large round numbers: French "many"
        samples.setdefault(rule(n), n)
    return samples


_BRACE = re.compile(r"\{(\w+)\}")
_PERCENT = re.compile(r"%\((\w+)\)s")


def placeholders(message: str) -> set[str]:
    """The named values a message takes: ``{name}`` (Python and the check-in script) and
    ``%(name)s`` (Jinja's ``trans`` blocks)."""
    return set(_BRACE.findall(message)) | set(_PERCENT.findall(message))
