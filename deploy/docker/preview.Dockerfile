# syntax=docker/dockerfile:1
# tistudio preview service, CPU image.
# Build from the repository root, so protos/ is in the context:
#   docker build -f deploy/docker/preview.Dockerfile -t tistudio-preview:0.1.0-cpu .
# GPU variant: preview.cuda.Dockerfile.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CPU wheel index, as `make venv` does: nothing later can resolve a CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY requirements.txt constraints.txt ./
# Runtime pins only: requirements.txt lists the test tools after its "# tests" line.
RUN sed '/^# tests/,$d' requirements.txt > runtime.txt \
    && pip install --no-cache-dir -r runtime.txt -c constraints.txt
COPY pyproject.toml ./
COPY protos/ protos/
COPY services/ services/
COPY clients/ clients/
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 tistudio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tistudio \
    && mkdir -p /var/cache/tistudio \
    && chown 10001:10001 /var/cache/tistudio
COPY --from=build /opt/venv /opt/venv
# HOME=/tmp: with a read-only root filesystem only /tmp and the model cache are writable (emptyDirs in Kubernetes).
# Servers never download models: references name local folders, the store, or the local Hugging Face cache.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TISTUDIO_HOST=0.0.0.0 \
    TISTUDIO_CACHE_DIR=/var/cache/tistudio
# glibc malloc tuned for SD sampling on CPU: without it 40-60% of an image is page faults; 1.7x faster with it
# (bench/results/preview-cpu.md).
ENV MALLOC_ARENA_MAX=1 \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    MALLOC_TRIM_THRESHOLD_=4294967296
USER 10001:10001
EXPOSE 50053 9453
CMD ["python", "-m", "services.preview"]
