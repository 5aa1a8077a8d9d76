"""TIAToolbox's PatchPredictor side by side with ``pathxai heatmap`` (``--method none`` and LRP) on one slide.

Usage (TIAToolbox needs torch < 2.13, so it lives in its own virtual environment; this script runs there)::

    /usr/bin/python3.11 -m venv /work/out/tia-venv
    /work/out/tia-venv/bin/pip install tiatoolbox==2.1.3 "torch<2.13" "torchvision<0.28" h5py
    /work/out/tia-venv/bin/python benchmarks/tiatoolbox_side_by_side.py --grid 12 --rounds 2 \
        --pathxai-python /work/main/.venv/bin/python

Builds (or reuses) the ``grid x grid`` GlaS mosaic of ``benchmarks/small_slide.py`` (0.62 µm/px JPEG pyramid),
then runs, in alternation for ``--rounds`` rounds, each as a fresh process timed from start to exit:

- ``tia``: TIAToolbox 2.x ``PatchPredictor`` over the whole slide with the default pathxai model (1.24 µm/px,
  112 px patches, stride 112, TIAToolbox's own Otsu tissue mask, ``wsireader_kwargs={"mpp": 0.62}`` since it
  reads no mpp from a generic TIFF's resolution tags), probabilities saved to Zarr;
- ``none``: ``pathxai heatmap SLIDE --method none`` (probabilities only, all exports);
- ``lrp``: ``pathxai heatmap SLIDE`` (LRP relevance, all exports).

The model: this script imports no pathxai (TIAToolbox's torch is older than pathxai's). It rebuilds the
``compact_cnn`` architecture from the model card in ~15 lines of plain torch and loads the safetensors
weights with ``strict=True`` (a missing, extra or misshapen tensor fails loudly). That was chosen over a
TorchScript/``torch.export`` file saved under pathxai's torch 2.14: such files are not promised to load in
an older torch, and the probability check below verifies the rebuild against pathxai's own output anyway.

Reports wall time, tiles/s and peak memory per run (``ru_maxrss`` of the largest process of the tree from
``wait4``, and the peak of the summed RSS of the whole tree sampled every 0.1 s with psutil), the medians'
ratios, and how the two tools' tumour probabilities agree on the tiles both computed (same top-left
corner at model resolution): Pearson r and max abs difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "pathxai" / "model" / "default"
GLAS_MPP = 0.62


def build_compact_cnn(card: dict[str, Any]) -> Any:
    """Rebuild the card's ``compact_cnn`` in plain torch and load its safetensors weights (strict)."""
    import torch
    from safetensors.torch import load_file
    from torch import nn

    if card["arch"] != "compact_cnn":
        raise SystemExit(f"only compact_cnn is rebuilt here, the card says {card['arch']!r}")
    kw = card.get("arch_kwargs") or {}
    layers: list[nn.Module] = []
    ch = 3
    for width in kw.get("widths", (24, 48, 96, 192, 256)):
        for _ in range(int(kw.get("convs_per_stage", 1))):
            layers += [nn.Conv2d(ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            ch = width
        layers.append(nn.MaxPool2d(2, 2))

    class CompactCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten(1)
            self.classifier = nn.Linear(ch, len(card["classes"]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.flatten(self.pool(self.features(x))))

    model = CompactCNN()
    model.load_state_dict(load_file(str(MODEL_DIR / "model.safetensors")), strict=True)
    return model.eval()


def run_tia(slide: str, out: Path, batch_size: int, workers: int, threads: int) -> None:
    """One TIAToolbox PatchPredictor run over ``slide`` (in its own process); writes ``out/tia_probs.npz``."""
    import torch
    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig
    from tiatoolbox.models.engine.patch_predictor import PatchPredictor
    from tiatoolbox.models.models_abc import ModelABC

    torch.set_num_threads(threads)
    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    mean = np.asarray(card["mean"], dtype=np.float32)
    std = np.asarray(card["std"], dtype=np.float32)
    net = build_compact_cnn(card)

    class Wrapped(ModelABC):  # type: ignore[misc]
        """The pathxai default model as a TIAToolbox model: card normalisation, softmax output."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        @staticmethod
        def preproc(image: np.ndarray) -> np.ndarray:
            return (image.astype(np.float32) / 255.0 - mean) / std

        @staticmethod
        def postproc(image: np.ndarray) -> np.ndarray:
            return np.argmax(image, axis=-1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x), dim=1)

        @staticmethod
        def infer_batch(model: Any, batch_data: Any, *, device: str = "cpu") -> np.ndarray:
            x = torch.as_tensor(batch_data).to(device).float().permute(0, 3, 1, 2).contiguous()
            model.eval()
            with torch.inference_mode():
                return model(x).cpu().numpy()

    size, mpp = int(card["input_size"]), float(card["mpp"])
    ioconfig = IOPatchPredictorConfig(
        input_resolutions=[{"units": "mpp", "resolution": mpp}],
        patch_input_shape=(size, size),
        stride_shape=(size, size),
    )
    predictor = PatchPredictor(model=Wrapped(), batch_size=batch_size, num_workers=workers, device="cpu")
    save = out / "tia"
    shutil.rmtree(save, ignore_errors=True)
    result = predictor.run(
        images=[Path(slide)],
        patch_mode=False,
        ioconfig=ioconfig,
        save_dir=save,
        overwrite=True,
        output_type="zarr",
        return_probabilities=True,
        auto_get_mask=True,
        wsireader_kwargs={"mpp": GLAS_MPP},
    )
    import zarr

    store = zarr.open(str(next(iter(result.values()))), mode="r")
    probs = np.asarray(store["probabilities"])
    coords = np.asarray(store["coordinates"])
    np.savez(out / "tia_probs.npz", probabilities=probs, coordinates=coords)
    print(f"tia: {len(probs)} patches")


class TreeSampler:
    """Peak of the summed RSS of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> float:
        """Stop sampling; the peak in MB."""
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, largest member's peak RSS (MB, ``wait4``) and peak summed tree RSS (MB) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    tree = sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return dt, usage.ru_maxrss / 1024, tree


def agreement(tia_npz: Path, pathxai_h5: Path, tumour: int) -> str:
    """Compare the two tools' tumour probabilities on tiles with the same model-resolution corner."""
    import h5py

    tia = np.load(tia_npz)
    tia_xy = tia["coordinates"][:, :2].astype(np.int64)  # at the read resolution (mpp), like m_coords
    tia_p = dict(zip(map(tuple, tia_xy), tia["probabilities"][:, tumour], strict=True))
    with h5py.File(pathxai_h5, "r") as f:
        done = f["done"][:].astype(bool) & ~f["failed"][:].astype(bool)
        m_xy = f["m_coords"][:][done]
        px_p = f["probabilities"][:][done, tumour]
    pairs = [(tia_p[xy], p) for xy, p in zip(map(tuple, m_xy), px_p, strict=True) if xy in tia_p]
    if len(pairs) < 2:
        return f"only {len(pairs)} common tiles (tia {len(tia_p)}, pathxai {len(px_p)})"
    a, b = np.asarray(pairs, dtype=np.float64).T
    r = float(np.corrcoef(a, b)[0, 1])
    return (
        f"{len(pairs)} common tiles (tia {len(tia_p)}, pathxai {len(px_p)}): Pearson r {r:.6f}, "
        f"max |diff| {np.abs(a - b).max():.2e}, mean |diff| {np.abs(a - b).mean():.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=12, help="mosaic side in GlaS images")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", default="tia,none,lrp", help="which runs, comma-separated (tia, none, lrp)")
    ap.add_argument("--glas", type=Path, default=Path("/work/shared/data/glas_warwick_qu"))
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("PATHXAI_BENCH_CACHE", "/tmp/pathxai-bench"))
    )
    ap.add_argument(
        "--pathxai-python", default="/work/main/.venv/bin/python", help="python with pathxai's deps"
    )
    ap.add_argument("--batch-size", type=int, default=16, help="TIAToolbox batch size (pathxai's default)")
    ap.add_argument("--tia-workers", type=int, default=2, help="TIAToolbox data-loader workers")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the TIAToolbox process")
    ap.add_argument("--tia", metavar="SLIDE", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tia:
        run_tia(args.tia, args.out, args.batch_size, args.tia_workers, args.threads)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from small_slide import build_mosaic  # no pathxai import: tifffile + PIL only

    slide = build_mosaic(args.glas, args.cache / f"glas_mosaic_{args.grid}x{args.grid}.tiff", args.grid)
    out = args.cache / f"tia_side_by_side_{args.grid}"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    px = args.pathxai_python
    me = [sys.executable, str(Path(__file__).resolve())]
    tia_opts = ["--batch-size", str(args.batch_size), "--tia-workers", str(args.tia_workers)]
    heatmap = [px, "-m", "pathxai", "heatmap", str(slide), "--overwrite"]
    cmds = {
        "tia": [*me, "--tia", str(slide), "--out", str(out), *tia_opts, "--threads", str(args.threads)],
        "none": [*heatmap, "--method", "none", "--out", str(out / "none")],
        "lrp": [*heatmap, "--out", str(out / "lrp")],
    }
    runs = [r for r in args.runs.split(",") if r]
    la = os.getloadavg()
    print(f"# {slide.name}, {args.rounds} rounds, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start")
    times: dict[str, list[float]] = {r: [] for r in runs}
    for rnd in range(1, args.rounds + 1):
        for r in runs:
            dt, rss, tree = timed(cmds[r], env)
            times[r].append(dt)
            print(f"round {rnd} {r:5s} {dt:7.2f} s  peak RSS {rss:6.0f} MB (largest)  {tree:6.0f} MB (tree)")
    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    n_tiles = {}
    if (out / "tia_probs.npz").exists():
        n_tiles["tia"] = len(np.load(out / "tia_probs.npz")["probabilities"])
    for r in ("none", "lrp"):
        summary = out / r / f"{slide.stem}.json"
        if summary.exists():
            n_tiles[r] = json.loads(summary.read_text())["n_tiles"]
    med = {r: statistics.median(v) for r, v in times.items()}
    for r, v in med.items():
        tps = f", {n_tiles[r] / v:.1f} tiles/s whole-process ({n_tiles[r]} tiles)" if r in n_tiles else ""
        print(f"median {r:5s} {v:7.2f} s{tps}")
    if "tia" in med:
        for r in ("none", "lrp"):
            if r in med:
                print(f"{r} / tia whole-process: {med[r] / med['tia']:.2f}x")
    h5 = out / "none" / f"{slide.stem}.h5"
    if (out / "tia_probs.npz").exists() and h5.exists():
        print(
            "agreement (tumour probability):",
            agreement(out / "tia_probs.npz", h5, card["tumour_index"]),
        )
    la = os.getloadavg()
    print(f"# load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at end")


if __name__ == "__main__":
    main()
