"""Training and export: MNIST data, the Keras ANN, the ONNX export and its parity gate.

Needs the `train` extra (TensorFlow, tf2onnx, onnx, mnist, matplotlib).
"""
