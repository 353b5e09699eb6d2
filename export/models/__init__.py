"""Own PyTorch definitions of the GPT-SoVITS inference networks (inference only, for ONNX export)."""
