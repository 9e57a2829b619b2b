"""Export: fast-inference formats (ONNX Runtime)."""
