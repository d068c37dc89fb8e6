"""The batch job: find inputs, decode them to 28x28 uint8 arrays, classify with onnxruntime, write CSV.

Nothing in this package may import TensorFlow: it is the slim runtime that `pip install .` gives.
"""
