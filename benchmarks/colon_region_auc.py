"""Region AUC of a model on the colon demo slide (the EBHI-Seg mosaic shipped with pathxai), alone.

The same numbers ``pathxai demo`` reports in ``demo.json`` (``region_auc``), without the rest of the
demo: the heatmap of ``pathxai/data/colon_demo/ebhi_colon_mosaic.tif`` with each model, then the AUC of
the tumour probability and of the summed LRP relevance over the labelled tiles
(:mod:`pathxai.heatmap.regions`). Heatmaps are written under ``--out`` (one folder per model).

Usage::

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/colon_region_auc.py --out /tmp/colon_auc \
        [--model default] [--model runs/other_model ...] [--json result.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pathxai.data.colon import colon_demo
from pathxai.heatmap.regions import describe, store_region_auc
from pathxai.jsonio import write_json
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.store import HeatmapStore


def measure(model: str, out: Path, method: str = "lrp") -> dict[str, Any]:
    """Heatmap of the colon demo slide with ``model`` (in ``out``) and its region AUC."""
    demo = colon_demo()
    res = heatmap_slide(demo.slide, out, HeatmapSettings(model=model, method=method, workers=0))
    with HeatmapStore.open(res.outputs["h5"]) as store:
        result = store_region_auc(store, demo.read_truth())
        result["model_sha256"] = store.attrs["model_sha256"]
    result.pop("labels")
    return {"model": model, "method": method, **result}


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="'default' or a model folder (repeatable)")
    p.add_argument("--method", default="lrp")
    p.add_argument("--out", type=Path, required=True, help="folder for the heatmaps")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args()
    results = []
    for i, model in enumerate(a.model or ["default"]):
        r = measure(model, a.out / f"m{i}", a.method)
        print(f"{model} ({r['model_sha256'][:12]}): {describe(r)}")
        results.append(r)
    if a.json is not None:
        write_json(a.json, results)


if __name__ == "__main__":
    main()
