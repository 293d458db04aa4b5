"""Templates in the reader's language: Jinja's i18n extension with the gettext functions of
one language handed to each render (``page_context``), so one environment serves every
language and nothing depends on which request ran before."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.runtime import Context
from markupsafe import Markup

from shared.i18n.catalogues import translations
from shared.i18n.languages import Language


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    """An autoescaping, strict environment with ``{% trans %}``, ``_()`` and the new-style
    gettext (values passed as keywords, escaped, never a second ``%`` pass)."""
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.newstyle_gettext = True  # type: ignore[attr-defined]
    return env


def _fill(context: Context, message: str, variables: dict[str, Any]) -> str:
    # The catalogue's own text is trusted markup (it may hold the template's tags); the values
    # put into it are escaped by Markup's % operator.
    rv: str = Markup(message) if context.eval_ctx.autoescape else message  # noqa: S704
    return rv % variables if variables else rv


def page_context(lang: Language) -> dict[str, Any]:
    """What a template needs to speak ``lang``: the gettext functions, ``lang`` (the BCP 47
    tag for ``<html lang>``) and ``dir`` (``ltr`` or ``rtl``)."""
    tr = translations(lang)

    @jinja2.pass_context
    def gettext(context: Context, message: str, /, **variables: Any) -> str:
        return _fill(context, tr.gettext(message), variables)

    @jinja2.pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int, /, **variables: Any) -> str:
        variables.setdefault("num", n)
        return _fill(context, tr.ngettext(singular, plural, n), variables)

    @jinja2.pass_context
    def pgettext(context: Context, ctx: str, message: str, /, **variables: Any) -> str:
        return _fill(context, tr.pgettext(ctx, message), variables)

    @jinja2.pass_context
    def npgettext(
        context: Context, ctx: str, singular: str, plural: str, n: int, /, **variables: Any
    ) -> str:
        variables.setdefault("num", n)
        return _fill(context, tr.npgettext(ctx, singular, plural, n), variables)

    return {
        "gettext": gettext,
        "_": gettext,
        "ngettext": ngettext,
        "pgettext": pgettext,
        "npgettext": npgettext,
        "lang": lang.tag,
        "dir": lang.dir,
    }
