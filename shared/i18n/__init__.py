"""Attune in the reader's language: which language (``languages``), the gettext catalogues
and deferred English text (``catalogues``), templates (``jinja``) and a request's language
(``web``). docs/i18n.md says how to add a language."""

from shared.i18n.catalogues import Text, _, translate, translations
from shared.i18n.languages import ENGLISH, LANGUAGES, Language, match, negotiate

__all__ = [
    "ENGLISH",
    "LANGUAGES",
    "Language",
    "Text",
    "_",
    "match",
    "negotiate",
    "translate",
    "translations",
]
