"""The thin API that front ends (CLI, viewer) call: one module per job.

- :mod:`pathxai.pipeline.slides`: slide info and tiling to a coordinates file.
"""
