"""The slide viewer: path confinement, catalogue of a run folder, deep-zoom tile serving, Streamlit page.

- :mod:`pathxai.viewer.paths`: serve only files under the configured roots;
- :mod:`pathxai.viewer.catalog`: stores, audit reports and models of an output folder;
- :mod:`pathxai.viewer.tiles` / :mod:`pathxai.viewer.server`: slide and overlay deep-zoom tiles over HTTP;
- :mod:`pathxai.viewer.region`: inspect one tile, recompute its heatmap with another method;
- :mod:`pathxai.viewer.mitigation` / :mod:`pathxai.viewer.mitigation_tab`: a mitigated model's
  before/after and both models' heatmaps on the same stress images (the Mitigation tab);
- :mod:`pathxai.viewer.page`: the Streamlit page (imported only by the app, it imports streamlit).
"""

from __future__ import annotations

from pathxai.errors import ConfinementError
from pathxai.viewer.paths import Roots, resolve_under

__all__ = ["ConfinementError", "Roots", "resolve_under"]
