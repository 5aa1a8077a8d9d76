#!/usr/bin/env bash
# Create .venv (if missing) and install pathxai with the given extras, e.g. `scripts/install.sh dev`.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# PATHXAI_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu, as the Dockerfile sets) installs
# torch/torchvision from that index first, so Linux gets CPU wheels instead of PyPI's CUDA build.
if [ -n "${PATHXAI_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --index-url "$PATHXAI_TORCH_INDEX" \
        "torch==${PATHXAI_TORCH_VERSION:-2.14.1}" "torchvision==${PATHXAI_TORCHVISION_VERSION:-0.29.1}"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
# The viewer's OpenSeadragon comes from the npm registry (pinned in its package-lock.json, never committed).
osd=pathxai/viewer/static
if [ ! -f "$osd/node_modules/openseadragon/package.json" ]; then
    if command -v npm >/dev/null 2>&1; then
        npm ci --prefix "$osd" --no-audit --no-fund --loglevel=error
    else
        echo "warning: npm not found; the viewer falls back to a static overview (install Node.js + npm, rerun)" >&2
    fi
fi
