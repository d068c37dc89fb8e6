"""The batch job, in flow order: inputs are found (discover, files), decoded to uint8 28x28
(images, fast_png, arrays, normalize, decode, workers, pipeline), classified (model) and written
(output, atomic), one run at a time (run); merge and show are tools beside it.

Nothing here may import TensorFlow or classify_batch.export: this is the slim runtime that
`pip install .` gives, and tests/test_layout.py holds it to that.
"""
