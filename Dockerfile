# pathxai: the Streamlit slide viewer by default, the `pathxai` CLI as the entrypoint.
#
#   docker build -t pathxai .
#   docker run --rm -p 8501:8501 -p 8502:8502 -v "$PWD/demo_out:/data" pathxai            # viewer on /data
#   docker run --rm -v "$PWD/demo_out:/data" pathxai demo --out /data                      # CLI instead
#
# The viewer's tile server listens on 8502; publish it on the same port number as inside.
# Every RUN below is a command that scripts/install.sh (README's install command, CI) also runs.
# scripts/docker_smoke.sh builds this file with buildah on local Debian bookworm bases (NODE_IMAGE,
# PYTHON_IMAGE), torch from local wheels (TORCH_INDEX="" plus the PIP_* build arguments below), and
# runs `pathxai demo` in the image.

# Base images (build arguments so that a machine without Docker Hub can use its own bookworm bases).
ARG NODE_IMAGE=node:20-bookworm-slim
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- OpenSeadragon from the npm registry (the `npm ci` of scripts/install.sh) ---------------------
FROM ${NODE_IMAGE} AS viewer-js
WORKDIR /src
COPY pathxai/viewer/static/package.json pathxai/viewer/static/package-lock.json pathxai/viewer/static/
RUN --mount=type=cache,target=/root/.npm \
    npm ci --prefix pathxai/viewer/static --no-audit --no-fund --loglevel=error

# --- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# torch/torchvision: pinned versions from TORCH_INDEX, the PyTorch CPU index (PyPI's Linux torch pulls
# gigabytes of CUDA libraries). TORCH_INDEX="" skips that step: torch then resolves like every other
# dependency (PyPI, or the wheel folders / indexes given below).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# pip settings of the build only (build arguments are not kept in the image's environment; empty values
# are ignored by pip): local wheel folders or indexes, e.g. host folders bind-mounted by `buildah bud -v`.
ARG PIP_FIND_LINKS=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_CONSTRAINT=""
# No PIP_NO_CACHE_DIR: pip's cache is a build cache mount below, kept between builds and never in the image.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATHXAI_TORCH_INDEX=${TORCH_INDEX} \
    PATHXAI_TORCH_VERSION=${TORCH_VERSION} \
    PATHXAI_TORCHVISION_VERSION=${TORCHVISION_VERSION} \
    PATHXAI_CACHE=/home/pathxai/.cache/pathxai \
    PATH=/app/.venv/bin:$PATH

# ~/.cache is created here, owned by the user: the cache mount below would otherwise leave it to root,
# and the dataset cache ($PATHXAI_CACHE) lives under it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin pathxai \
    && install -d -o pathxai -g pathxai /home/pathxai/.cache /app /data
WORKDIR /app
COPY --chown=10001:10001 . /app
COPY --from=viewer-js --chown=10001:10001 /src/pathxai/viewer/static/node_modules /app/pathxai/viewer/static/node_modules
USER 10001
RUN --mount=type=cache,target=/home/pathxai/.cache/pip,uid=10001,gid=10001 \
    bash scripts/install.sh

VOLUME ["/data"]
EXPOSE 8501 8502
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
ENTRYPOINT ["pathxai"]
CMD ["view", "/data", "--host", "0.0.0.0", "--port", "8501", "--tile-port", "8502"]
