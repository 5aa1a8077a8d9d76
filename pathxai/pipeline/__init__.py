"""The thin API that front ends (CLI, viewer) call: one module per job.

- :mod:`pathxai.pipeline.slides`: slide info and tiling to a coordinates file (re-exported from
  :mod:`pathxai.slide.info` and :mod:`pathxai.heatmap.tiles`).
"""
