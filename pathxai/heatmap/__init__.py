"""The heatmap engine below the job: settings, slide jobs, worker pool, compute, canvas, exports.

``pathxai.pipeline.heatmap`` (the batch job) and ``pipeline.heatmap_run`` (one slide) drive these
modules; nothing here imports the pipeline.
"""
