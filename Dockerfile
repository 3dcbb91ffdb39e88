# Weightscope: API and workers in one image (untested here: no Docker engine was available
# where this was written; see README "Scale-out").
#
#   docker build -t weightscope .                                   # CPU (default)
#   docker build -t weightscope:cuda --build-arg TORCH_CUDA=cu126 .  # CUDA wheels of torch
#
# TORCH_CUDA picks the PyTorch wheel index: "cpu", or a CUDA tag such as cu126. CUDA wheels
# carry their own CUDA runtime, so the slim base image serves both; GPU containers need the
# NVIDIA container toolkit on the host.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin weightscope \
    && mkdir -p /data && chown weightscope:weightscope /data

WORKDIR /app
# torch first, from the chosen index, so the project's own install adds no other torch.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

COPY pyproject.toml README.md ./
COPY app ./app
COPY graphs ./graphs
COPY models ./models
COPY merging ./merging
COPY zoo ./zoo
COPY migrations ./migrations
RUN pip install . && rm -rf build

USER weightscope
ENV WEIGHTSCOPE_DATA_DIR=/data \
    WEIGHTSCOPE_METANETWORK_DIR=/app/models/builtin \
    WEIGHTSCOPE_HOST=0.0.0.0 \
    WEIGHTSCOPE_PORT=8000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"
CMD ["weightscope", "serve"]
