"""Every language's catalogue is complete and sound, or the build fails (issue #18).

The template (shared/locale/attune.pot) is what the extraction finds in the code today; each
language's .po holds exactly its messages (none missing, none left over), every one translated
and not fuzzy, with the same placeholders and markup as the English, and with the plural forms
its language has. The checks are functions, each also run on a broken catalogue to show it
catches what it is for.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from services.checkins import emotions
from shared.i18n.catalogues import LOCALE_DIR, catalogue_path, placeholders, translations
from shared.i18n.languages import ENGLISH, LANGUAGES, Language

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [lang for lang in LANGUAGES if lang != ENGLISH]
Key = tuple[str | None, str]  # (context, id)


def key_of(message: object) -> Key:
    mid = message.id  # type: ignore[attr-defined]
    return (message.context, mid if isinstance(mid, str) else mid[0])  # type: ignore[attr-defined]


def read(path: Path) -> Catalog:
    with path.open("rb") as fp:
        return read_po(fp)


def template() -> Catalog:
    return read(LOCALE_DIR / "attune.pot")


def extracted() -> set[Key]:
    """What the extraction finds in the code now (babel.cfg, as scripts/i18n runs it)."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2),
                "npgettext": ((1, "c"), 2, 3)}  # fmt: skip
    found: set[Key] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add((context, message if isinstance(message, str) else message[0]))
    return found


# --- the checks ------------------------------------------------------------------------------


def missing_and_unused(po: Catalog, pot: Catalog) -> tuple[set[Key], set[Key]]:
    wanted = {key_of(m) for m in pot if m.id}
    have = {key_of(m) for m in po if m.id}
    return wanted - have, (have - wanted) | {key_of(m) for m in po.obsolete.values()}


def untranslated(po: Catalog) -> list[Key]:
    bad = []
    for m in po:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if m.fuzzy or not all(s and s.strip() for s in strings):
            bad.append(key_of(m))
    return bad


TAG = re.compile(r"</?[a-z]+(?:\s[^>]*)?>")


def _count_placeholder(m: object) -> str | None:
    context = m.context  # type: ignore[attr-defined]
    if context in emotions.PLURALS:
        return emotions.PLURALS[context][0]
    return "num"


def placeholder_problems(po: Catalog) -> list[str]:
    """Each translation takes exactly the English's named values and markup. In a plural
    message the count may be left out of the forms that are not "other" (Arabic says "two
    answers" in one word)."""
    problems = []
    for m in po:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        wanted = set().union(*(placeholders(i) for i in ids))
        tags = sorted(TAG.findall(ids[-1]))
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        for index, text in enumerate(strings):
            have = placeholders(text)
            need = wanted
            if len(strings) > 1 and index < len(strings) - 1:
                need = wanted - {_count_placeholder(m)}
            if not (need <= have <= wanted):
                problems.append(f"{key_of(m)} [{index}]: {sorted(have)} != {sorted(wanted)}")
            if sorted(TAG.findall(text)) != tags:
                problems.append(f"{key_of(m)} [{index}]: markup differs")
            if text.count("{") != text.count("}"):
                problems.append(f"{key_of(m)} [{index}]: unbalanced braces")
    return problems


def plural_problems(po: Catalog, lang: Language) -> list[str]:
    """The catalogue's Plural-Forms are the language's (CLDR, as Babel knows them), and every
    plural message has one string per form."""
    expected = get_plural(lang.babel)
    problems = []
    if po.num_plurals != expected.num_plurals or po.plural_expr != expected.plural_expr:
        problems.append(f"Plural-Forms: {po.plural_forms} (expected {expected.plural_forms})")
    for m in po:
        if m.id and isinstance(m.id, tuple):
            if not isinstance(m.string, tuple) or len(m.string) != expected.num_plurals:
                problems.append(f"{key_of(m)}: {len(m.string)} forms")
    return problems


def reviewed_note(po: Catalog) -> bool:
    return "NATIVE-SPEAKER REVIEW" in (po.header_comment or "")


# --- the catalogues ------------------------------------------------------------------------


def test_the_template_is_what_the_code_says_today() -> None:
    """No string added to the code without reaching the template, none left in it that the
    code no longer has (scripts/i18n extract remakes it)."""
    pot = {key_of(m) for m in template() if m.id}
    code = extracted()
    assert sorted(code - pot, key=str) == [], "run scripts/i18n extract"
    assert sorted(pot - code, key=str) == [], "run scripts/i18n extract"


def test_there_is_one_catalogue_per_language_and_no_other() -> None:
    found = {p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/attune.po")}
    assert found == {lang.babel for lang in TRANSLATED}
    assert not list(ROOT.glob("shared/locale/**/*.mo")) or all(
        not _tracked(p) for p in ROOT.glob("shared/locale/**/*.mo")
    )


def _tracked(path: Path) -> bool:
    import subprocess

    result = subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(path)],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.parametrize("lang", TRANSLATED, ids=lambda lang: lang.tag)
def test_catalogue_is_complete(lang: Language) -> None:
    po = read(catalogue_path(lang, ".po"))
    missing, unused = missing_and_unused(po, template())
    assert sorted(missing, key=str) == [], "missing"
    assert sorted(unused, key=str) == [], "unused"
    assert untranslated(po) == []
    assert not po.fuzzy


@pytest.mark.parametrize("lang", TRANSLATED, ids=lambda lang: lang.tag)
def test_catalogue_placeholders_and_markup_match_english(lang: Language) -> None:
    assert placeholder_problems(read(catalogue_path(lang, ".po"))) == []


@pytest.mark.parametrize("lang", TRANSLATED, ids=lambda lang: lang.tag)
def test_catalogue_plural_forms_are_the_languages(lang: Language) -> None:
    assert plural_problems(read(catalogue_path(lang, ".po")), lang) == []


@pytest.mark.parametrize("lang", TRANSLATED, ids=lambda lang: lang.tag)
def test_catalogue_is_marked_for_native_speaker_review(lang: Language) -> None:
    assert reviewed_note(read(catalogue_path(lang, ".po")))


@pytest.mark.parametrize("lang", TRANSLATED, ids=lambda lang: lang.tag)
def test_compiled_catalogue_is_installed_and_current(lang: Language) -> None:
    """scripts/bootstrap compiled this .po: the page speaks the language."""
    po = read(catalogue_path(lang, ".po"))
    tr = translations(lang)
    for m in po:
        if m.id and not isinstance(m.id, tuple):
            got = tr.pgettext(m.context, m.id) if m.context else tr.gettext(m.id)
            assert got == m.string, key_of(m)


@pytest.mark.parametrize("lang", LANGUAGES, ids=lambda lang: lang.tag)
def test_every_band_has_distinct_words_with_one_line_meanings(lang: Language) -> None:
    """A child picks among different words, each explained in one short line."""
    strings = emotions.catalogue(lang)
    for name, vocabulary in emotions.VOCABULARIES.items():
        for band, words in vocabulary.items():
            labels = [strings[f"emotion.{w}"] for w in words]
            assert len(set(labels)) == len(labels), (lang.tag, name, band, labels)
    all_labels = [strings[f"emotion.{w}"] for w in emotions.PLEASANTNESS]
    assert len(set(all_labels)) == len(all_labels), lang.tag
    for word in emotions.PLEASANTNESS:
        meaning = strings[f"meaning.{word}"]
        assert meaning.rstrip().endswith((".", "。")), (lang.tag, word, meaning)
        assert len(meaning) <= 80, (lang.tag, word, meaning)
    faces = [strings[f"face.{b}"] for b in emotions.BANDS]
    assert len(set(faces)) == 5, faces


@pytest.mark.parametrize("lang", LANGUAGES, ids=lambda lang: lang.tag)
def test_plural_messages_reach_the_script_by_the_languages_categories(lang: Language) -> None:
    """One text per CLDR category (what Intl.PluralRules answers in the browser)."""
    rule = Locale.parse(lang.babel).plural_form
    categories = set(rule.tags) | {"other"}
    strings = emotions.catalogue(lang, group=5)
    for key, (count, _s, _p) in emotions.PLURALS.items():
        if count == "group":
            assert isinstance(strings[key], str) and "{group}" not in strings[key]
        else:
            assert strings[key]["count"] == count
            assert set(strings[key]["forms"]) == categories, key


# --- each check catches what it is for ---------------------------------------------------------


def _po(text: str) -> Catalog:
    return read_po(io.BytesIO(text.encode()))


HEADER = (
    'msgid ""\nmsgstr ""\n"Language: ar\\n"\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
)


def test_the_checks_catch_a_missing_a_left_over_and_an_untranslated_message() -> None:
    pot = _po('msgid "One"\nmsgstr ""\n\nmsgid "Two"\nmsgstr ""\n')
    po = _po('msgid "One"\nmsgstr ""\n\nmsgid "Three"\nmsgstr "Drei"\n')
    missing, unused = missing_and_unused(po, pot)
    assert missing == {(None, "Two")} and unused == {(None, "Three")}
    assert untranslated(po) == [(None, "One")]
    fuzzy = _po('#, fuzzy\nmsgid "One"\nmsgstr "Eins"\n')
    assert untranslated(fuzzy) == [(None, "One")]


def test_the_checks_catch_changed_placeholders_and_markup() -> None:
    po = _po(
        'msgid "Hello {name}"\nmsgstr "Hallo {nom}"\n\n'
        'msgid "Error <code>%(code)s</code>."\nmsgstr "Fehler %(code)s."\n\n'
        'msgid "Fine {name}"\nmsgstr "Gut {name}"\n'
    )
    problems = placeholder_problems(po)
    assert len(problems) == 2 and "Hello" in problems[0] and "markup" in problems[1]


def test_the_checks_catch_plural_forms_that_are_not_the_languages() -> None:
    po = _po(HEADER + 'msgid "{num} answer"\nmsgid_plural "{num} answers"\n'
             'msgstr[0] "a"\nmsgstr[1] "b"\n')  # fmt: skip
    arabic = next(lang for lang in LANGUAGES if lang.tag == "ar")
    problems = plural_problems(po, arabic)
    assert problems and problems[0].startswith("Plural-Forms")


def test_the_review_note_is_required() -> None:
    assert not reviewed_note(_po(HEADER))
