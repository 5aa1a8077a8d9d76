# pathxai: the Streamlit slide viewer by default, the `pathxai` CLI as the entrypoint.
#
#   docker build -t pathxai .
#   docker run --rm -p 8501:8501 -p 8502:8502 -v "$PWD/demo_out:/data" pathxai            # viewer on /data
#   docker run --rm -v "$PWD/demo_out:/data" pathxai demo --out /data                      # CLI instead
#
# The viewer's tile server listens on 8502; publish it on the same port number as inside.
# Every RUN below is a command that scripts/install.sh (README's install command, CI) also runs.

# --- OpenSeadragon from the npm registry (the `npm ci` of scripts/install.sh) ---------------------
FROM node:20-bookworm-slim AS viewer-js
WORKDIR /src
COPY pathxai/viewer/static/package.json pathxai/viewer/static/package-lock.json pathxai/viewer/static/
RUN npm ci --prefix pathxai/viewer/static --no-audit --no-fund --loglevel=error

# --- runtime ---------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# torch/torchvision pins of the CPU index (same versions as the dev environment; override with --build-arg).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # CPU-only torch: PyPI's Linux torch wheels pull the CUDA libraries (gigabytes); scripts/install.sh
    # installs torch/torchvision from this index first when the variable is set.
    PATHXAI_TORCH_INDEX=https://download.pytorch.org/whl/cpu \
    PATHXAI_TORCH_VERSION=${TORCH_VERSION} \
    PATHXAI_TORCHVISION_VERSION=${TORCHVISION_VERSION} \
    PATHXAI_CACHE=/home/pathxai/.cache/pathxai \
    PATH=/app/.venv/bin:$PATH

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin pathxai \
    && mkdir -p /app /data \
    && chown pathxai:pathxai /app /data
WORKDIR /app
COPY --chown=10001:10001 . /app
COPY --from=viewer-js --chown=10001:10001 /src/pathxai/viewer/static/node_modules /app/pathxai/viewer/static/node_modules
USER 10001
RUN bash scripts/install.sh

VOLUME ["/data"]
EXPOSE 8501 8502
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
ENTRYPOINT ["pathxai"]
CMD ["view", "/data", "--host", "0.0.0.0", "--port", "8501", "--tile-port", "8502"]
