"""Caffe-faithful reproduction of Lapuschkin et al. (ICCVW 2017), with Caffe model converters."""
from setuptools import find_packages, setup

setup(
    name="caffe-agegender-repro",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["converters", "converters.*", "reproduce", "reproduce.*"]),
    package_data={"converters": ["proto/*.proto"], "reproduce": ["data/*.json", "data/*.prototxt", "data/*.txt"]},
    install_requires=[
        "numpy>=1.23",
        "protobuf>=4.21,<8",
        "torch>=2.1",
        "lmdb>=1.4",
        "opencv-python-headless>=4.5",   # cv2.dnn's Caffe importer (OpenCV 4 only) is needed by `verify` and the parity tests alone
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16", "onnxscript>=0.1"],
        "test": ["pytest>=7", "pyyaml>=6", "grpcio-tools>=1.50", "onnx>=1.14", "onnxruntime>=1.16", "onnxscript>=0.1",
                 "wsgidav>=4", "cheroot>=8",
                 # the reference of the OpenCV comparisons (OpenCV 5 has no Caffe importer); the package itself
                 # also runs under OpenCV 5, where those comparisons skip and say why
                 "opencv-python-headless>=4.5,<5"],
    },
    entry_points={"console_scripts": ["caffe-convert=converters.__main__:main"]},
)
