"""The public facade ``pathxai.api``: lazy (no torch on import) and the same jobs as the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pathxai.model.testing import save_tiny_model


def test_importing_the_facade_loads_no_torch() -> None:
    code = (
        "import sys; from pathxai import api; assert 'torch' not in sys.modules, 'torch'; print(api.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "heatmap" in out and "evaluate" in out


def test_heatmap_through_the_facade_gives_a_typed_result(tmp_path: Path) -> None:
    from pathxai import api
    from pathxai.pipeline.heatmap import BatchResult, HeatmapSettings

    rng = np.random.default_rng(0)
    img = np.clip(np.array([180, 90, 160]) + rng.normal(0, 25, (192, 192, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "patch.png")
    model = save_tiny_model(tmp_path / "model")
    settings = HeatmapSettings(model=str(model), workers=0, exports=(), mpp=0.5)
    result = api.heatmap([tmp_path / "patch.png"], tmp_path / "out", settings, slide_mpp=0.5)
    assert isinstance(result, BatchResult)
    (one,) = result.results
    assert one.status == "done" and (tmp_path / "out" / "patch.h5").is_file()
