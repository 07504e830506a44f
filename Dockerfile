# syntax=docker/dockerfile:1
#
# One image for every platform process; the command picks the process (deploy/kubernetes):
#   python -m api | python -m workers <queue> | python -m workers relay <domain> | python -m db.migrate
#
# Build (docs/deployment.md):
#   docker build -t registry.example.com/checkout/checkout-platform:0.1.0 \
#     --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
#
# The base image is pinned by tag here and by digest in CI: a tag can be re-pointed, a digest
# cannot. Look the digest up once per base-image update and pass it as above:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm   # -> Digest: sha256:...
# Python 3.11, the version the test suite runs on (pyproject: requires-python >= 3.11).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: the runtime dependencies in a virtualenv ---------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# The dependencies only, never the dev extra (no test servers, no linters in production).
# requirements.lock, when the repository has one, pins every package with its hash and wins;
# until then the [project] dependencies of pyproject.toml are resolved at build time.
# (`requirements.loc[k]` copies the file if it exists and does not fail if it does not.)
COPY pyproject.toml requirements.loc[k] ./
RUN if [ -f requirements.lock ]; then \
        pip install --require-hashes --no-deps -r requirements.lock; \
    else \
        python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep=chr(10))" > requirements.txt \
        && pip install -r requirements.txt; \
    fi \
    && pip check

# ---- runtime: slim, non-root, read-only friendly ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the cluster (bytecode is compiled
# below, at build time). PYTHONPATH: the platform runs from its source tree in /app, where
# alembic.ini and db/migrations/ sit beside the packages as db/migrate.py expects them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp

# A fixed, unprivileged uid/gid (the manifests' runAsUser/runAsGroup: 10001), no login shell.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Only what the processes import (tests/deploy checks that nothing here imports what is left
# out: tests, tools, devstack, sandbox). Owned by root and not writable by the app user.
COPY alembic.ini ./
COPY kit ./kit
COPY domains ./domains
COPY activities ./activities
COPY workflows ./workflows
COPY workers ./workers
COPY api ./api
COPY db ./db
# The workers' exec probes (deploy/kubernetes).
COPY deploy/probes/worker_probe.py ./probes/worker_probe.py
RUN python -m compileall -q /app

USER 10001:10001

# The API's port (API_PORT). Workers serve metrics on WORKER_METRICS_PORT inside the pod only.
EXPOSE 8000

# Python runs as PID 1: it installs its own SIGTERM handlers (workers drain, uvicorn finishes
# requests) and starts no child processes, so no init process is needed to forward signals or
# reap zombies.
CMD ["python", "-m", "api"]
