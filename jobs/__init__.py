"""The batch job: find inputs, decode them to uint8 28x28 arrays, classify them, write the CSV.

Nothing in this package may import TensorFlow: it is the slim runtime that `pip install .` gives.
"""

import os

# numpy does no matrix work here and onnxruntime has its own threads, so OpenBLAS's idle thread
# pool is only a cost: with no other thread, the decode pool may fork (fast) instead of starting
# from a forkserver. Set before numpy is first imported; an explicit setting is respected.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
