"""The languages Attune speaks, and which of them a person gets.

The choice follows the person, in this order: the language of their LMS session (the LTI
``launch_presentation`` claim's ``locale``, carried in Attune's launch token), then their
browser's ``Accept-Language`` (pages outside a launch: registration, admin, errors), then
English. Each candidate is matched by language tag: the exact tag, then shorter prefixes
(``pt-BR`` → ``pt-BR``; ``es-MX`` → ``es``), then the one catalogue of that language
(``pt-PT`` → ``pt-BR``).

LMSes spell tags their own way, and every spelling is accepted:

- Canvas sends Rails' ``I18n.locale``: BCP 47 with scripts and private-use suffixes
  (``pt-BR``, ``zh-Hans``, ``zh-Hant``, ``fr-CA``, ``en-AU-x-unimelb``, ``da-x-k12``).
- Moodle sends ``current_language()``: lower case with underscores, where the part after the
  underscore is a region or a variety of its own (``pt_br``, ``zh_cn``, ``zh_tw``, ``es_mx``,
  ``de_du`` — German with "du" —, ``en_kids``).

Chinese is matched by script: ``zh``, ``zh-Hans``, ``zh-CN``, ``zh-SG`` (and Moodle's
``zh_cn``) read Simplified Chinese; ``zh-Hant``, ``zh-TW``, ``zh-HK``, ``zh-MO`` are Traditional
readers, who are not given Simplified characters: they fall through to their next preference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    tag: str  # BCP 47, as written in <html lang> and sent to Intl in the browser
    babel: str  # Babel's and gettext's identifier (the catalogue's folder name)
    name: str  # the language's name in itself
    rtl: bool = False

    @property
    def dir(self) -> str:
        return "rtl" if self.rtl else "ltr"


ENGLISH = Language("en", "en", "English")
LANGUAGES: tuple[Language, ...] = (
    ENGLISH,
    Language("es", "es", "Español"),
    Language("fr", "fr", "Français"),
    Language("de", "de", "Deutsch"),
    Language("pt-BR", "pt_BR", "Português (Brasil)"),
    Language("nl", "nl", "Nederlands"),
    Language("ar", "ar", "العربية", rtl=True),
    Language("zh-Hans", "zh_Hans", "简体中文"),
)
BY_TAG: dict[str, Language] = {lang.tag: lang for lang in LANGUAGES}
_BY_LOWER: dict[str, Language] = {lang.tag.lower(): lang for lang in LANGUAGES}
# A language asked for without (or with another) region or script: its only catalogue.
_BY_LANGUAGE: dict[str, Language] = {lang.tag.split("-")[0].lower(): lang for lang in LANGUAGES}

_SUBTAG = re.compile(r"^[a-z0-9]{1,8}$")
_PRIMARY = re.compile(r"^[a-z]{2,3}$")
_TRADITIONAL_CHINESE = frozenset({"hant", "tw", "hk", "mo"})
MAX_TAG = 64
MAX_ACCEPT_LANGUAGE = 32  # entries read from one header


def match(tag: object) -> Language | None:
    """The supported language for one tag in any LMS's or browser's spelling, or None."""
    if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG:
        return None
    subtags = tag.strip().replace("_", "-").lower().split("-")
    if "x" in subtags:  # private use (Canvas's "en-AU-x-unimelb"): not a language of its own
        subtags = subtags[: subtags.index("x")]
    if not subtags or not _PRIMARY.match(subtags[0]) or not all(map(_SUBTAG.match, subtags)):
        return None
    if subtags[0] == "zh":
        # Chinese goes by script: a named script decides (zh-Hans-HK is Simplified), else the
        # region says which script its readers use.
        if "hans" not in subtags[1:] and _TRADITIONAL_CHINESE.intersection(subtags[1:]):
            return None
    for n in range(len(subtags), 0, -1):
        found = _BY_LOWER.get("-".join(subtags[:n]))
        if found is not None:
            return found
    return _BY_LANGUAGE.get(subtags[0])


def accept_language(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (RFC 9110 q-values; equal
    weights keep their order; ``q=0`` and ``*`` dropped; malformed weights count as 0)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE]):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and 0.0 < q <= 1.0:
            weighted.append((-q, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(*preferences: str | Iterable[str] | None) -> Language:
    """The first supported language among the preferences, in order; English otherwise.

    Each preference is a tag (the launch's locale), a list of tags (``accept_language``) or
    None (not known)."""
    for preference in preferences:
        if preference is None:
            continue
        for tag in [preference] if isinstance(preference, str) else preference:
            found = match(tag)
            if found is not None:
                return found
    return ENGLISH
