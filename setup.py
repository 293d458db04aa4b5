"""The package build's one addition to pyproject.toml: the gettext catalogues
(``shared/locale/*/LC_MESSAGES/attune.po``) are compiled to ``.mo`` files inside the built
package, so the wheel and the production image carry them while the repository keeps only the
``.po`` sources (docs/i18n.md). ``scripts/bootstrap`` compiles them in place for a checkout."""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

CATALOGUES = "shared/locale/*/LC_MESSAGES/*.po"


class BuildPyWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        for po in sorted(Path().glob(CATALOGUES)):
            with po.open("rb") as source:
                catalogue = read_po(source)
            if catalogue.fuzzy:
                raise SystemExit(f"{po}: the catalogue is marked fuzzy (not ready to ship)")
            target = Path(self.build_lib) / po.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                write_mo(out, catalogue)


setup(cmdclass={"build_py": BuildPyWithCatalogues})
