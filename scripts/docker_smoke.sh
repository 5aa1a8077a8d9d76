#!/usr/bin/env bash
# Build the Dockerfile here, without Docker (buildah, chroot isolation), on local Debian bookworm base
# images, run `pathxai demo` inside the image and check its outputs. Exits non-zero on any failure,
# naming the step and showing the end of its log.
#
#   bash scripts/docker_smoke.sh          # as root (debootstrap, buildah); ~10 min cold, less with cached bases
#
# Steps: 1. base images (once; kept for the next run): `debootstrap --variant=minbase bookworm`
# -> localhost/pathxai-smoke/debian:bookworm, then Debian's python3.11 + venv -> .../python:bookworm and
# Debian's nodejs + npm -> .../node:bookworm (stand-ins for python:3.11-slim-bookworm and
# node:20-bookworm-slim, which need Docker Hub). 2. `buildah bud` of the Dockerfile with those bases,
# TORCH_INDEX="" and the host's local wheel folders / file:// indexes bind-mounted read-only at their own
# paths (torch/torchvision pinned by a constraints file). 3. `pathxai demo` in a container of the image,
# with the demo slide's folder mounted read-only where `pathxai data fetch` looks for a local copy
# (/shared/data/wsi_samples = ../shared/data/wsi_samples from /app). 4. checks with the image's own
# Python: demo.json, every output it lists, complete heatmap stores, no partial files, writable cache.
# 5. the viewer's health endpoint (the image's HEALTHCHECK command) on a free port.
#
# Network: Debian's package mirror, PyPI and the npm registry only.
#
# Environment (all optional):
#   SMOKE_WORK          work folder (rootfs, logs, demo outputs); default /var/tmp/pathxai-docker-smoke
#   SMOKE_IMAGE         tag of the built image; default localhost/pathxai:smoke
#   SMOKE_KEEP_IMAGE=1  keep the built image afterwards (default: removed; the base images are kept)
#   SMOKE_FRESH=1       rebuild the base images as well
#   SMOKE_NO_VIEWER=1   skip step 5
#   SMOKE_SLIDE_DIR     folder with CMU-1-Small-Region.svs; default ../shared/data/wsi_samples of the repo
#   DEBIAN_MIRROR       default: the first Debian URI of /etc/apt/sources.list*, else deb.debian.org
#   SMOKE_FIND_LINKS, SMOKE_EXTRA_INDEX_URL
#                       local wheel folders / file:// indexes for pip (space-separated); default: the
#                       host's `pip config` (global.find-links, global.extra-index-url)
#   SMOKE_CA_BUNDLE     CA bundle mounted during the build; default the host's
#                       /etc/ssl/certs/ca-certificates.crt ("" for none)
#   TORCH_VERSION, TORCHVISION_VERSION   default 2.14.1 / 0.29.1 (the dev environment's)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${SMOKE_WORK:-/var/tmp/pathxai-docker-smoke}"
image="${SMOKE_IMAGE:-localhost/pathxai:smoke}"
debian_image=localhost/pathxai-smoke/debian:bookworm
python_image=localhost/pathxai-smoke/python:bookworm
node_image=localhost/pathxai-smoke/node:bookworm
torch_version="${TORCH_VERSION:-2.14.1}"
torchvision_version="${TORCHVISION_VERSION:-0.29.1}"
slide_dir="${SMOKE_SLIDE_DIR:-$repo/../shared/data/wsi_samples}"
slide_name=CMU-1-Small-Region.svs
logs="$work/logs"
out="$work/out"
ctr=""
viewer_pid=""

fail() {
    echo "docker smoke FAILED: $*" >&2
    exit 1
}

# The viewer runs as `timeout ... pathxai view` in its own process group (timeout's pid, written to
# $out/viewer.pid); stopping `buildah run` alone would leave streamlit behind.
stop_viewer() {
    [ -n "$viewer_pid" ] || return 0
    local group
    group="$(cat "$out/viewer.pid" 2>/dev/null || true)"
    if [ -n "$group" ]; then
        kill -TERM -- "-$group" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 -- "-$group" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
    kill "$viewer_pid" 2>/dev/null || true
    wait "$viewer_pid" 2>/dev/null || true
    viewer_pid=""
}

cleanup() {
    stop_viewer
    if [ -n "$ctr" ]; then
        buildah rm "$ctr" >/dev/null 2>&1 || true
    fi
    if [ "${SMOKE_KEEP_IMAGE:-0}" != 1 ]; then
        buildah rmi "$image" >/dev/null 2>&1 || true
    fi
    rm -rf "$work/rootfs"
}
trap cleanup EXIT

# step NAME CMD...: run CMD with its output in $logs/NAME.log; on failure name the step, show the log's end.
step() {
    local name="$1"
    shift
    local log="$logs/$name.log" t0=$SECONDS rc=0
    echo "== $name ($(date -u +%H:%M:%S))"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- last lines of $log:" >&2
        tail -n 40 "$log" >&2
        fail "step '$name' exited with $rc (full log: $log)"
    fi
    echo "   ok in $((SECONDS - t0)) s"
}

# --- preconditions ---------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap and buildah's chroot isolation need it)"
missing=""
for tool in buildah podman debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "== installing Debian packages:$missing"
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
        || fail "could not install$missing with apt-get"
fi
[ -f "$slide_dir/$slide_name" ] || fail "no $slide_name in $slide_dir (set SMOKE_SLIDE_DIR to a folder that has it)"
slide_dir="$(cd "$slide_dir" && pwd)"
mkdir -p "$logs"
rm -f "$logs"/*.log

if [ -z "${DEBIAN_MIRROR:-}" ]; then
    DEBIAN_MIRROR="$(grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
        | awk '{print $2}' | head -n 1 || true)"
    DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi

host_pip() { python3 -m pip config get "global.$1" 2>/dev/null || true; }
find_links="${SMOKE_FIND_LINKS-$(host_pip find-links)}"
extra_index="${SMOKE_EXTRA_INDEX_URL-$(host_pip extra-index-url)}"
# Bind-mount each local wheel folder, and each file:// index's parent (its links point to ../../files/),
# read-only at its own path so the URLs stay valid inside the build.
mounts=()
for loc in $find_links $extra_index; do
    case "$loc" in
        file://*/simple | file://*/simple/) dir="$(dirname "${loc#file://}")" ;;
        file://*) dir="${loc#file://}" ;;
        /*) dir="$loc" ;;
        *) continue ;;
    esac
    [ -d "$dir" ] && mounts+=(-v "$dir:$dir:ro")
done
# The host's CA bundle, mounted over the image's during the build (never copied into it): the build then
# trusts what the host trusts, e.g. a TLS-inspecting proxy in front of the registries.
ca_bundle="${SMOKE_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
[ -n "$ca_bundle" ] && [ -f "$ca_bundle" ] && mounts+=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
mkdir -p "$work/pip"
printf 'torch==%s\ntorchvision==%s\n' "$torch_version" "$torchvision_version" >"$work/pip/constraints.txt"
echo "mirror $DEBIAN_MIRROR; pip find-links '${find_links}', extra index '${extra_index}'; torch $torch_version"

# --- 1. base images --------------------------------------------------------------------------------
have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

make_debian() {
    rm -rf "$work/rootfs"
    nice -n 10 debootstrap --variant=minbase bookworm "$work/rootfs" "$DEBIAN_MIRROR"
    rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | podman import - "$debian_image"
    rm -rf "$work/rootfs"
}

# make_base IMAGE PACKAGES...: the Debian image plus Debian packages, as a buildah-built image.
make_base() {
    local tag="$1"
    shift
    mkdir -p "$work/bases"
    cat >"$work/bases/Containerfile" <<EOF
FROM $debian_image
ENV LANG=C.UTF-8
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $* \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
EOF
    nice -n 10 buildah bud --isolation chroot --pull=never -f "$work/bases/Containerfile" -t "$tag" "$work/bases"
}

if [ "${SMOKE_FRESH:-0}" = 1 ]; then
    for img in "$python_image" "$node_image" "$debian_image"; do
        buildah rmi "$img" >/dev/null 2>&1 || true
    done
fi
have_image "$debian_image" || step debootstrap make_debian
have_image "$python_image" || step base-python make_base "$python_image" python3 python3-venv ca-certificates
have_image "$node_image" || step base-node make_base "$node_image" nodejs npm ca-certificates

# --- 2. the image ----------------------------------------------------------------------------------
buildah rmi "$image" >/dev/null 2>&1 || true
build_start=$SECONDS
step build nice -n 10 buildah bud --isolation chroot --pull=never --format docker -t "$image" \
    --build-arg NODE_IMAGE="$node_image" --build-arg PYTHON_IMAGE="$python_image" \
    --build-arg TORCH_INDEX= \
    --build-arg PIP_FIND_LINKS="$find_links" --build-arg PIP_EXTRA_INDEX_URL="$extra_index" \
    --build-arg PIP_CONSTRAINT=/smoke-pip/constraints.txt \
    -v "$work/pip:/smoke-pip:ro" "${mounts[@]}" \
    -f "$repo/Dockerfile" "$repo"
build_s=$((SECONDS - build_start))
size_bytes="$(podman image inspect --format '{{.Size}}' "$image")"
size_mb=$((size_bytes / 1000000))

# --- 3. pathxai demo inside ------------------------------------------------------------------------

rm -rf "$out"
mkdir -p "$out/check"
user="$(buildah inspect --type image --format '{{.Docker.Config.User}}' "$image")"
chown "${user:-0}" "$out"
ctr="$(buildah from --pull=never "$image")"
run_opts=(--isolation chroot -v "$out:/out" -v "$slide_dir:/shared/data/wsi_samples:ro" -v "$out/check:/smoke-check:ro")
in_ctr() { buildah run "${run_opts[@]}" "$ctr" -- "$@"; }
demo_start=$SECONDS
step demo in_ctr pathxai demo --out /out/demo
demo_s=$((SECONDS - demo_start))

# --- 4. checks, with the image's own Python ---------------------------------------------------------
cat >"$out/check/check_demo.py" <<'EOF'
"""Check the outputs of `pathxai demo --out /out/demo` inside the image."""

import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pathxai
import torch
from pathxai.store import HeatmapStore

out = Path(sys.argv[1])
errors: list[str] = []
summary = json.loads((out / "demo.json").read_text())
if summary["slide"] != "/shared/data/wsi_samples/CMU-1-Small-Region.svs":
    errors.append(f"demo used {summary['slide']}, not the mounted local copy")
for key, path in summary["outputs"].items():
    if not Path(path).exists():
        errors.append(f"output {key} listed in demo.json is missing: {path}")
for key in ("tiles", "heatmap_h5", "heatmap_tif", "heatmap_geojson", "audit_report_json", "pruning_report"):
    if key not in summary["outputs"]:
        errors.append(f"demo.json lists no {key}")
partial = sorted(str(p) for p in out.rglob("*.partial.h5"))
if partial:
    errors.append(f"partial stores left: {partial}")
with h5py.File(summary["outputs"]["tiles"], "r") as f:
    n_tiles = int(f["coords"].shape[0])
stores = sorted(p for p in (out / "heatmaps").glob("*.h5"))
if not stores:
    errors.append("no heatmap store")
for path in stores:
    with HeatmapStore.open(path) as store:
        done = store.done
        probs = store.probabilities
        if store.attrs.get("status") != "complete":
            errors.append(f"{path.name}: status {store.attrs.get('status')!r}")
        if store.n_tiles == 0 or not done.all():
            errors.append(f"{path.name}: {int(done.sum())} of {store.n_tiles} tiles done")
        if not np.isfinite(probs[done & ~store.failed]).all():
            errors.append(f"{path.name}: non-finite probabilities")
        if store.n_levels < 1 or not np.isfinite(store.probability(store.levels)).any():
            errors.append(f"{path.name}: no stitched canvas")
        print(f"{path.name}: {store.n_tiles} tiles, {store.n_levels} levels, status {store.attrs['status']}")
for name in ("model.safetensors", "model_card.json", "pruning.json"):
    if not (out / "models" / "pruned" / name).is_file():
        errors.append(f"pruned model: no {name}")
cache = Path(os.environ["PATHXAI_CACHE"])
cache.mkdir(parents=True, exist_ok=True)
(cache / ".smoke").write_text("ok")
(cache / ".smoke").unlink()
print(f"pathxai {pathxai.__version__} from {pathxai.__file__}; torch {torch.__version__}; {n_tiles} tiles")
print(f"demo timings (s): {summary['timings_s']}")
if errors:
    print("\n".join(["FAILED:", *errors]), file=sys.stderr)
    sys.exit(1)
print("all demo outputs present and complete")
EOF
step check in_ctr python /smoke-check/check_demo.py /out/demo
sed 's/^/   /' "$logs/check.log"

# --- 5. the viewer answers its health check ---------------------------------------------------------
viewer_s="skipped"
if [ "${SMOKE_NO_VIEWER:-0}" != 1 ]; then
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    port="$(free_port)"
    tile_port="$(free_port)"
    viewer_start=$SECONDS
    buildah run "${run_opts[@]}" "$ctr" -- sh -c 'echo $$ >/out/viewer.pid; exec timeout -k 5 180 "$@"' viewer \
        pathxai view /out/demo --host 127.0.0.1 --port "$port" --tile-port "$tile_port" >"$logs/viewer.log" 2>&1 &
    viewer_pid=$!
    echo "== viewer health on port $port ($(date -u +%H:%M:%S))"
    health="import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/_stcore/health', timeout=4)"
    ok=0
    for _ in $(seq 1 60); do
        kill -0 "$viewer_pid" 2>/dev/null || break
        if in_ctr python -c "$health" >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 2
    done
    if [ "$ok" -ne 1 ]; then
        tail -n 40 "$logs/viewer.log" >&2
        fail "the viewer did not answer on /_stcore/health (log: $logs/viewer.log)"
    fi
    viewer_s=$((SECONDS - viewer_start))
    echo "   ok in $viewer_s s"
    stop_viewer
    if [ -n "$(cat "$out/viewer.pid" 2>/dev/null)" ] && kill -0 -- "-$(cat "$out/viewer.pid")" 2>/dev/null; then
        fail "the viewer's processes did not stop"
    fi
fi

commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "docker smoke OK: $(date -u +%Y-%m-%dT%H:%MZ) commit $commit image $image ${size_mb} MB," \
    "build ${build_s} s, demo ${demo_s} s inside, viewer health ${viewer_s} s, total ${SECONDS} s"
