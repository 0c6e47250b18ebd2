# An AAM worker (`python -m worker`): a Celery worker for one device (AAM_DEVICE=cuda:0 or
# cpu), with CUDA PyTorch from pip wheels. The wheels carry the CUDA runtime, so the host needs
# only the NVIDIA driver and the NVIDIA Container Toolkit. Runs as an unprivileged user.
#
# Build from the repository root (docker-compose.yml does this for you):
#   docker build -f docker/worker.Dockerfile -t aam/worker:0.1.0 .
# Build arguments: PYTHON_IMAGE, TORCH_SPEC, TORCH_INDEX_URL (pick the CUDA build your driver
# supports, e.g. .../whl/cu126), AAM_UID (the same on every host that shares the data
# directory), STRIPED_UNIFRAC and UNIFRAC_SPEC (see below).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/aam/bin:$PATH
# DL3013 (unpinned pip package): hadolint cannot see that TORCH_SPEC pins the version.
# hadolint ignore=DL3013
RUN python -m venv /opt/aam \
 && pip install --no-cache-dir "${TORCH_SPEC}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies on their own layer, so that a code change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
# Optional Striped UniFrac (the `unifrac` package), only from a prebuilt wheel: its source
# build needs libssu, which is not on PyPI (conda's unifrac-binaries). Where no wheel exists
# for this platform the build says so and goes on: nothing in the service needs it (jobs use
# aam_core's exact torch UniFrac engine; Striped is a library option, backend="striped").
ARG STRIPED_UNIFRAC=false
ARG UNIFRAC_SPEC=unifrac==1.5
# DL3013 (unpinned pip package): hadolint cannot see that UNIFRAC_SPEC pins the version.
# hadolint ignore=DL3013
RUN if [ "${STRIPED_UNIFRAC}" = "true" ]; then \
        pip install --no-cache-dir --only-binary=unifrac "${UNIFRAC_SPEC}" \
        || echo "Striped UniFrac: no binary wheel of ${UNIFRAC_SPEC} for this platform; not installed"; \
    fi
COPY aam_core ./aam_core
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ARG AAM_UID=10001
# NVIDIA_DRIVER_CAPABILITIES: the toolkit mounts the driver's compute libraries and nvidia-smi.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/aam/bin:$PATH \
    AAM_DATA_DIR=/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN groupadd --system --gid "${AAM_UID}" aam \
 && useradd --system --uid "${AAM_UID}" --gid aam --home-dir /data --shell /usr/sbin/nologin aam \
 && install -d -o aam -g aam -m 0750 /data
COPY --from=build /opt/aam /opt/aam
WORKDIR /data
# Numeric, so that a runtime can check it is not root without reading /etc/passwd.
USER ${AAM_UID}:${AAM_UID}
# Asks this container's own Celery node (celery@<container hostname>) to answer a ping over the
# broker; exit 1 (unhealthy) when it does not within 10 s. The shell expands the variables when
# the check runs; `|| exit 1` turns any failure into 1 (Docker reserves 2).
HEALTHCHECK --interval=60s --timeout=20s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "CELERY_BROKER_URL=\"${AAM_BROKER_URL}\" celery inspect ping --destination \"celery@${HOSTNAME}\" --timeout 10 > /dev/null || exit 1"]
CMD ["python", "-m", "worker"]
