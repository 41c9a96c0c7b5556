# syntax=docker/dockerfile:1
# tistudio caption service, CUDA image (BLIP on a GPU; caption usually scales out on CPU).
# Build from the repository root, so protos/ is in the context:
#   docker build -f deploy/docker/caption.cuda.Dockerfile -t tistudio-caption:0.1.0-cuda .
# The torch wheel index and the CUDA base image go together: change both (e.g. cu126 and a 12.6 image).
# Python 3.11 (the version the pins are locked on) comes from uv's standalone builds, because the CUDA base is an
# Ubuntu image whose own Python is another version.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.5

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION=3.11
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv --seed --python "${PYTHON_VERSION}" /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, from the CUDA wheel index; the pins below then see it installed (2.13.0+cuXXX matches ==2.13.0).
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY requirements.txt constraints.txt ./
# Runtime pins only: requirements.txt lists the test tools after its "# tests" line.
RUN sed '/^# tests/,$d' requirements.txt > runtime.txt \
    && pip install --no-cache-dir -r runtime.txt -c constraints.txt
COPY pyproject.toml ./
COPY protos/ protos/
COPY services/ services/
COPY clients/ clients/
RUN pip install --no-cache-dir --no-deps .

FROM ${CUDA_IMAGE}
RUN groupadd --system --gid 10001 tistudio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tistudio \
    && mkdir -p /var/cache/tistudio \
    && chown 10001:10001 /var/cache/tistudio
COPY --from=build /opt/python /opt/python
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
    TISTUDIO_CACHE_DIR=/var/cache/tistudio \
    TISTUDIO_DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50051 9451
CMD ["python", "-m", "services.caption"]
