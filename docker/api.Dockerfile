# The AAM REST API (`python -m app`): CPU PyTorch, runs as an unprivileged user.
#
# Build from the repository root (docker-compose.yml does this for you):
#   docker build -f docker/api.Dockerfile -t aam/api:0.1.0 .
# Build arguments: PYTHON_IMAGE (pin a digest for byte-for-byte rebuilds), TORCH_SPEC,
# TORCH_INDEX_URL, AAM_UID (the same on every host that shares the data directory).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/aam/bin:$PATH
# PyTorch first and from its own index: the CPU build is ~10x smaller than PyPI's CUDA build,
# and the project's `torch>=2.4` is then already met. DL3013 (unpinned pip package): hadolint
# cannot see that TORCH_SPEC pins the version.
# hadolint ignore=DL3013
RUN python -m venv /opt/aam \
 && pip install --no-cache-dir "${TORCH_SPEC}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies on their own layer, so that a code change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY aam_core ./aam_core
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ARG AAM_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/aam/bin:$PATH \
    AAM_DATA_DIR=/data \
    AAM_HOST=0.0.0.0 \
    AAM_PORT=8000
RUN groupadd --system --gid "${AAM_UID}" aam \
 && useradd --system --uid "${AAM_UID}" --gid aam --home-dir /data --shell /usr/sbin/nologin aam \
 && install -d -o aam -g aam -m 0750 /data
COPY --from=build /opt/aam /opt/aam
WORKDIR /data
# Numeric, so that a runtime can check it is not root without reading /etc/passwd.
USER ${AAM_UID}:${AAM_UID}
EXPOSE 8000
# Liveness only (/health consults no dependency); /ready is for load balancers and people.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('AAM_PORT', '8000'), timeout=4)"]
# The API refuses to listen on 0.0.0.0 without AAM_API_KEYS or AAM_KEYS_FILE.
CMD ["python", "-m", "app"]
