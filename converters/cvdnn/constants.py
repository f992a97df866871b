"""OpenCV's ``DNN_BACKEND_*`` / ``DNN_TARGET_*`` numbers (the values of OpenCV 4.x's ``dnn.hpp``
enums, the same in every 4.x release that has them) and the tick clock of ``getPerfProfile``."""
from __future__ import annotations

DNN_BACKEND_DEFAULT = 0
DNN_BACKEND_HALIDE = 1
DNN_BACKEND_INFERENCE_ENGINE = 2
DNN_BACKEND_OPENCV = 3
DNN_BACKEND_VKCOM = 4
DNN_BACKEND_CUDA = 5
DNN_BACKEND_WEBNN = 6
DNN_BACKEND_TIMVX = 7
DNN_BACKEND_CANN = 8

DNN_TARGET_CPU = 0
DNN_TARGET_OPENCL = 1
DNN_TARGET_OPENCL_FP16 = 2
DNN_TARGET_MYRIAD = 3
DNN_TARGET_VULKAN = 4
DNN_TARGET_FPGA = 5
DNN_TARGET_CUDA = 6
DNN_TARGET_CUDA_FP16 = 7
DNN_TARGET_HDDL = 8
DNN_TARGET_NPU = 9
DNN_TARGET_CPU_FP16 = 10

NAMES = {k: v for k, v in dict(globals()).items() if k.startswith("DNN_")}


def backend_name(value: int) -> str:
    return next((k for k, v in NAMES.items() if k.startswith("DNN_BACKEND_") and v == value), "unknown")


def target_name(value: int) -> str:
    return next((k for k, v in NAMES.items() if k.startswith("DNN_TARGET_") and v == value), "unknown")


def tick_frequency() -> float:
    """``cv2.getTickFrequency()`` (ticks per second), 1e9 without OpenCV."""
    try:
        import cv2
        return float(cv2.getTickFrequency())
    except (ImportError, AttributeError):
        return 1e9
