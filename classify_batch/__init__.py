"""classify-batch: handwritten digit images in, digits out as CSV; the model trained here too.

The one installed namespace. `classify_batch.jobs` (the batch job), `classify_batch.export`
(training and export) and `classify_batch.artifacts` (the committed model) live in the checkout's
top-level `jobs/`, `export/` and `artifacts/` folders; see pyproject.toml for how they map.
"""
