"""Caffe artefacts -> PyTorch / ONNX with Caffe's exact numerics.

Generic: knows Caffe, not Adience or the paper (``reproduce`` builds on it, never the reverse).
"""
from . import formats  # noqa: F401
