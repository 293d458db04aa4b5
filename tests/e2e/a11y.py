"""Accessibility checks for the browser tests: axe-core (pinned through the PyPI package
axe-playwright-python, which ships axe.min.js: nothing is downloaded at run time) with the WCAG
2.0/2.1 A and AA rules, and what axe does not check: the focus indicator's contrast, text
sizes, horizontal scrolling.

Every audit is recorded in ``test-artifacts/axe-results.jsonl`` (page, rules passed,
violations), which the issue's report quotes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import axe_playwright_python

from tests.e2e.waits import ARTIFACTS

AXE_SOURCE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
AXE_VERSION = re.search(r"axe v([\d.]+)", AXE_SOURCE[:200]).group(1)  # type: ignore[union-attr]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
RESULTS = ARTIFACTS / "axe-results.jsonl"


def _report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
            lines.append(f"      {node.get('failureSummary', '')[:300]}")
    return "\n".join(lines)


async def audit(frame: Any, page_name: str) -> dict[str, Any]:
    """Run axe-core in ``frame`` (a Playwright Page or Frame: the tool's document inside the LMS
    frame) and fail on any violation of the WCAG 2.0/2.1 A/AA rules, or any text whose colour
    contrast axe could not decide (text over an image or SVG: it must have a plain background
    axe can check)."""
    if not await frame.evaluate("() => typeof window.axe !== 'undefined'"):
        await frame.evaluate(AXE_SOURCE)
    results = await frame.evaluate(
        """opts => axe.run(document, opts).then(r => ({
            violations: r.violations, incomplete: r.incomplete, passes: r.passes.length,
            url: r.url}))""",
        {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    undecided = [i for i in results["incomplete"] if i["id"] == "color-contrast"]
    ARTIFACTS.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(
            json.dumps(
                {
                    "page": page_name,
                    "axe": AXE_VERSION,
                    "passes": results["passes"],
                    "violations": len(results["violations"]),
                    "undecided_contrast": sum(len(i["nodes"]) for i in undecided),
                }
            )
            + "\n"
        )
    assert not results["violations"], f"axe on {page_name}:\n" + _report(results["violations"])
    assert not undecided, f"axe could not decide contrast on {page_name}:\n" + _report(undecided)
    return results  # type: ignore[no-any-return]


def _channel(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb()``/``rgba()`` colours (alpha ignored)."""

    def luminance(css: str) -> float:
        r, g, b_ = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
        return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b_)

    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


# The focused element's indicator: its outline (or, for a visually hidden radio, its label's)
# and the first opaque background behind it.
FOCUS_STYLE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  let target = el;
  const own = getComputedStyle(el);
  if ((parseFloat(own.opacity) === 0 || el.offsetWidth <= 1) && el.labels && el.labels[0]) {
    target = el.labels[0];
  }
  const cs = getComputedStyle(target);
  let n = target.parentElement, bg = "rgb(255, 255, 255)";
  while (n) {
    const b = getComputedStyle(n).backgroundColor;
    if (b && b !== "rgba(0, 0, 0, 0)" && b !== "transparent") { bg = b; break; }
    n = n.parentElement;
  }
  return {
    tag: el.tagName, id: el.id, focus: el.matches(':focus'), within: el.matches(':focus-within'),
    text: (el.innerText || el.value || el.name || "").trim().slice(0, 40),
    width: parseFloat(cs.outlineWidth), style: cs.outlineStyle, color: cs.outlineColor, bg: bg,
  };
}"""


async def focus_indicator(frame: Any) -> dict[str, Any] | None:
    """The focused element's indicator, with its contrast against the background."""
    ring: dict[str, Any] | None = await frame.evaluate(FOCUS_STYLE)
    if ring is not None:
        ring["contrast"] = round(contrast(ring["color"], ring["bg"]), 2)
    return ring


def assert_visible_focus(ring: dict[str, Any] | None, where: str) -> None:
    assert ring is not None, f"nothing has the focus ({where})"
    assert ring["style"] != "none" and ring["width"] >= 2, f"no focus outline: {ring} ({where})"
    assert ring["contrast"] >= 3, f"focus outline contrast {ring['contrast']}:1 < 3:1: {ring}"


async def tab_to(page: Any, frame: Any, selector: str, *, limit: int = 80) -> dict[str, Any]:
    """Press Tab (the keyboard only) until the focused element in ``frame`` matches
    ``selector``; every stop on the way must show a focus indicator of at least 3:1."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        ring = await focus_indicator(frame)
        if ring is None:
            continue  # the focus is outside the tool's frame (the LMS page)
        assert_visible_focus(ring, f"tabbing to {selector}")
        if await frame.evaluate("s => document.activeElement.matches(s)", selector):
            return ring
    raise AssertionError(f"Tab never reached {selector}")


async def no_horizontal_scroll(frame: Any) -> int:
    """The document's width beyond its viewport (0: nothing scrolls sideways)."""
    extra: int = await frame.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert extra <= 0, f"the page scrolls sideways by {extra} px"
    return extra


async def smallest_text(frame: Any, selector: str) -> float:
    """The smallest computed font size (px) of any text in ``selector`` elements."""
    size: float = await frame.evaluate(
        """s => {
          let min = Infinity;
          for (const root of document.querySelectorAll(s)) {
            const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            while (walk.nextNode()) {
              const t = walk.currentNode;
              if (!t.textContent.trim()) continue;
              const el = t.parentElement;
              if (el.closest('.visually-hidden')) continue;
              min = Math.min(min, parseFloat(getComputedStyle(el).fontSize));
            }
          }
          return min;
        }""",
        selector,
    )
    return size
