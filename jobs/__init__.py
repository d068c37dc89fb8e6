"""The batch job: find inputs, decode them to uint8 28x28 arrays, classify them, write the CSV.

Nothing in this package may import TensorFlow: it is the slim runtime that `pip install .` gives.
"""
