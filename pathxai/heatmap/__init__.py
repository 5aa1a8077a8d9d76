"""The heatmap engine below the job: settings, slide jobs, worker pool, compute, canvas, exports, one slide.

``slide_run`` computes one slide (``heatmap_slide``, ``run_job``); ``pathxai.pipeline.heatmap`` (the
batch job) drives it; nothing here imports the pipeline.
"""
