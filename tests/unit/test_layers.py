"""The package layers hold: each imports only from the layers below it.

``shared`` <- ``services.<name>`` <- ``devstack`` (development tooling) <- ``attune`` (the
composition root). A service never imports another service; ``shared`` imports nothing above
it. Static and dynamic imports (``importlib.import_module("...")`` with a literal or an
f-string prefix) both count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("shared", "services", "devstack", "attune")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
        ):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values:
                head = arg.values[0]
                if isinstance(head, ast.Constant) and isinstance(head.value, str):
                    found.add(head.value.rstrip("."))
    return {name for name in found if name.split(".")[0] in OURS}


def _allowed(module: str, imported: str) -> bool:
    layer, *rest = module.split(".")
    target = imported.split(".")
    if layer == "shared":
        return target[0] == "shared"
    if layer == "services":
        own = rest[0]
        return target[0] == "shared" or target[:2] in (["services", own], ["services"])
    if layer == "devstack":
        return target[0] in ("shared", "services", "devstack")
    return True  # attune: the composition root


def _modules() -> list[tuple[str, Path]]:
    out = []
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.append((".".join(parts), path))
    return out


def test_every_package_imports_only_from_below() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, path in _modules()
        for name in sorted(_imports(path))
        if not _allowed(module, name)
    ]
    assert not wrong, wrong


def test_the_check_sees_imports() -> None:
    # Not vacuous: the composition root's dynamic imports and devstack's use of a service's
    # CLI are found, and a shared module importing a service would be refused.
    assert "services" in {n.split(".")[0] for n in _imports(ROOT / "attune" / "cli.py")}
    assert "services.registration.cli" in _imports(ROOT / "devstack" / "supervisor.py")
    assert not _allowed("shared.web", "services.launch.app")
    assert not _allowed("services.launch.app", "services.checkins.api")
    assert not _allowed("shared.cli", "devstack.supervisor")
