"""The check-in page's assets, ready for translation (issue #18 follows #17): every string the
script shows comes from the server's catalogue, every feeling word has a label and a one-line
meaning there, and the stylesheet uses logical properties only, so a right-to-left page lays
itself out without mirrored rules."""

from __future__ import annotations

import re
from pathlib import Path

from services.checkins import emotions

STATIC = Path(emotions.__file__).parent / "static"
APP_JS = (STATIC / "app.js").read_text()
APP_CSS = (STATIC / "app.css").read_text()


def test_every_key_the_script_uses_is_in_the_catalogue() -> None:
    used = set(re.findall(r'T\["([a-z_.0-9]+)"\]', APP_JS))
    used |= set(re.findall(r'fmt\("([a-z_.0-9]+)"', APP_JS))
    prefixes = set(re.findall(r'T\["([a-z_]+\.)" \+', APP_JS))
    catalogue = emotions.catalogue()
    assert used and prefixes >= {"face.", "band.", "status."}
    assert sorted(used - set(catalogue)) == []
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in catalogue), prefix


def test_the_script_writes_no_sentence_of_its_own() -> None:
    """Text reaches the page through the catalogue (T, fmt), never as a literal: a quoted
    string with two words or more is a sentence someone would have to translate."""
    sentences = []
    for line in APP_JS.splitlines():
        code = re.sub(r"(^|\s)//.*$", "", line)  # a comment, not a URL's //
        for text in re.findall(r'"((?:[^"\\]|\\.)*)"', code):
            if re.search(r"[A-Z][a-z]+ [A-Za-z]+", text):  # class lists are lower case
                sentences.append(text)
    assert sentences == []


def test_every_word_has_a_label_and_a_one_line_meaning() -> None:
    strings = emotions.catalogue()
    for band, words in emotions.FULL.items():
        assert strings[f"face.{band}"] and strings[f"band.{band}"]
        for word in words:
            meaning = strings[f"meaning.{word}"]
            assert strings[f"emotion.{word}"]
            assert meaning.endswith(".") and len(meaning) <= 70, (word, meaning)
    for band, words in emotions.SIMPLE.items():
        assert set(words) <= set(emotions.FULL[band])
    payload = emotions.vocabulary_payload()
    first = payload["simple"][0]
    assert first["face"] == strings["face.1"]
    assert first["words"][0] == {
        "id": "miserable",
        "label": "Miserable",
        "meaning": strings["meaning.miserable"],
    }


PHYSICAL = re.compile(
    r"(?<![-\w])(margin|padding|border)-(left|right)\b|(?<![-\w])(left|right)\s*:"
    r"|text-align\s*:\s*(left|right)|float\s*:\s*(left|right)"
    r"|(?<![-\w])(margin|padding)\s*:\s*[^;}]*\s[^;}]*\s[^;}]*\s"  # 4-value shorthands
)


def test_the_stylesheet_uses_logical_properties_only() -> None:
    rules = re.sub(r"/\*.*?\*/", "", APP_CSS, flags=re.S)
    assert [m.group(0) for m in PHYSICAL.finditer(rules)] == []


ROOT = Path(__file__).resolve().parents[2]


def test_readme_screenshots_exist_are_small_and_come_from_the_browser_suite() -> None:
    readme = (ROOT / "README.md").read_text()
    shots = re.findall(r"docs/screenshots/([\w-]+)\.png", readme)
    made = (ROOT / "tests/e2e/test_experience_browser.py").read_text()
    assert len(set(shots)) >= 4
    for name in shots:
        png = ROOT / "docs/screenshots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size < 120_000, name
        assert f'shot_path("{name}", readme=readme)' in made, name  # scripts/screenshots remakes it


OTHER_STYLES = {
    "registration.css": (ROOT / "services/registration/static/registration.css").read_text(),
    "error.html": (ROOT / "shared/templates/error.html").read_text(),
}


def test_every_stylesheet_uses_logical_properties_only() -> None:
    """The registration pages and the error page lay themselves out right to left too."""
    for name, text in OTHER_STYLES.items():
        rules = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert [m.group(0) for m in PHYSICAL.finditer(rules)] == [], name


TEMPLATES = sorted(
    p for top in ("shared", "services") for p in (ROOT / top).rglob("templates/*.html")
)


def untranslated_text(source: str) -> list[str]:
    """Words a template shows outside ``{% trans %}``, ``_()``/``gettext`` and values: what a
    reader would see in English whatever their language."""
    text = re.sub(r"{%-?\s*trans\b.*?endtrans\s*-?%}", " ", source, flags=re.S)
    text = re.sub(r"{#.*?#}|{{.*?}}|{%.*?%}", " ", text, flags=re.S)
    text = re.sub(r"<(style|script|code)\b.*?</\1>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z']+", text) if w not in ("Attune",)]


def test_every_template_speaks_through_the_catalogues() -> None:
    assert len(TEMPLATES) >= 10
    for path in TEMPLATES:
        assert untranslated_text(path.read_text()) == [], path
    assert untranslated_text("<p>{{ _('Hello') }} world</p>") == ["world"]  # the check works


def test_every_page_template_declares_its_language_and_direction() -> None:
    for path in TEMPLATES:
        source = path.read_text()
        if "<html" in source:
            assert '<html lang="{{ lang }}" dir="{{ dir }}">' in source, path
