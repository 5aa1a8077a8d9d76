"""pathxai: trustworthy and small tumour classifiers for H&E whole-slide images.

Heatmaps (LRP via zennit) streamed from OpenSlide, a bias audit grounded in those heatmaps,
and explanation-guided structured pruning. See ``DESIGN.md`` for the layers.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
