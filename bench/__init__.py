"""Benchmark of gsv against GPT-SoVITS (PyTorch eager), Genie-TTS and Python onnxruntime; see bench/__main__.py."""
