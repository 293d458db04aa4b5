"""Which language a person gets (issue #18): the launch's locale as Canvas and Moodle spell it,
then the browser's Accept-Language by weight, then English."""

from __future__ import annotations

import pytest

from shared.i18n.languages import ENGLISH, accept_language, match, negotiate


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        # Canvas: Rails I18n.locale (lib/lti/messages/jwt_message.rb, launch_presentation.locale)
        ("en", "en"),
        ("es", "es"),
        ("es-ES", "es"),
        ("fr-CA", "fr"),
        ("pt-BR", "pt-BR"),
        ("pt", "pt-BR"),  # Canvas's European Portuguese: the one Portuguese catalogue
        ("zh-Hans", "zh-Hans"),
        ("nl", "nl"),
        ("ar", "ar"),
        ("de", "de"),
        ("en-AU-x-unimelb", "en"),  # a private-use suffix is no language
        ("en-GB-x-ukhe", "en"),
        ("da-x-k12", None),
        # Moodle: current_language() (mod/lti/locallib.php launch_presentation_locale)
        ("pt_br", "pt-BR"),
        ("zh_cn", "zh-Hans"),
        ("es_mx", "es"),
        ("de_du", "de"),  # German with "du": a variety, not a region
        ("fr_ca", "fr"),
        ("en_us", "en"),
        ("en_kids", "en"),
        ("nl", "nl"),
        # Browsers (BCP 47, any case)
        ("ZH-cn", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-SG", "zh-Hans"),
        ("ar-EG", "ar"),
        ("pt-PT", "pt-BR"),
        # Traditional Chinese readers are not given Simplified characters
        ("zh-Hant", None),
        ("zh-TW", None),
        ("zh_tw", None),
        ("zh-HK", None),
        ("zh-Hant-TW", None),
        ("zh-Hans-HK", "zh-Hans"),  # a named script decides, not the region
        ("zh_Hans_TW", "zh-Hans"),
        # Languages Attune does not speak, and nonsense
        ("ja", None),
        ("sv-x-k12", None),
        ("", None),
        ("  ", None),
        ("*", None),
        ("e", None),
        ("english", None),
        ("en-US;q=0.9", None),
        ("x-klingon", None),
        ("es-" + "a" * 70, None),
    ],
)
def test_one_tag_in_any_lms_spelling(sent: str, expected: str | None) -> None:
    found = match(sent)
    assert (found.tag if found else None) == expected


def test_a_tag_that_is_not_a_string_matches_nothing() -> None:
    assert match(None) is None
    assert match(42) is None
    assert match(["es"]) is None


def test_accept_language_orders_by_weight_then_by_position() -> None:
    header = "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"
    assert accept_language(header) == ["fr-CH", "fr", "en", "de"]
    assert accept_language("en;q=0.2, ar;q=0.8, es") == ["es", "ar", "en"]
    assert accept_language("de;q=0.5, nl;q=0.5") == ["de", "nl"]  # equal weights: order kept


def test_accept_language_drops_refused_and_malformed_weights() -> None:
    assert accept_language("es;q=0, fr") == ["fr"]
    assert accept_language("es;q=abc, fr;q=0.1") == ["fr"]
    assert accept_language("es;q=2, fr") == ["fr"]  # over 1 is not a weight
    assert accept_language("") == [] and accept_language(None) == []
    assert accept_language(",,, ;q=1") == []
    assert len(accept_language(", ".join(["es"] * 500))) == 32  # a bounded read


def test_negotiation_takes_the_first_supported_preference() -> None:
    # The launch's locale wins over the browser's languages.
    assert negotiate("pt_br", accept_language("es, en")).tag == "pt-BR"
    # An unsupported launch locale falls through to the browser's best supported language.
    assert negotiate("ja", accept_language("ja, de;q=0.8, en;q=0.5")).tag == "de"
    # Within the browser's list, a lower-weighted supported language beats unsupported ones.
    assert negotiate(None, accept_language("sv, zh-TW;q=0.9, ar;q=0.1")).tag == "ar"
    # Nothing usable: English.
    assert negotiate(None, accept_language("sv, ja")) == ENGLISH
    assert negotiate() == ENGLISH
    assert negotiate(None, []) == ENGLISH


def test_the_launch_token_carries_the_language_and_older_tokens_read_as_english() -> None:
    from shared.lti.launch_token import LaunchTokens
    from shared.signing import TokenSigner

    tokens = LaunchTokens([b"k" * 32], ttl_s=60)
    fields: dict[str, object] = {
        "launch_id": "l1",
        "platform_id": 1,
        "deployment_id": "d",
        "subject": "s",
        "context_id": "c",
        "resource_link_id": None,
        "roles": ("learner",),
        "message_type": "LtiResourceLinkRequest",
        "region": "us-east-1",
    }
    assert tokens.read(tokens.issue(**fields, language="ar")).language == "ar"  # type: ignore[arg-type]
    # A token issued before the language was carried (a rolling deploy): English.
    older = TokenSigner([b"k" * 32], "attune/launch-token/v1").sign(
        {"lid": "l1", "p": 1, "d": "d", "sub": "s", "ctx": "c", "rl": None, "ro": ["learner"],
         "mt": "LtiResourceLinkRequest", "r": "us-east-1", "exp": 2**40}
    )  # fmt: skip
    assert tokens.read(older).language == "en"
