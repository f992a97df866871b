"""``caffe.proto``: ``caffe_pb2`` is this package's own Caffe schema module (:mod:`converters.proto.caffe_pb2`).

``from caffe.proto import caffe_pb2`` and ``import caffe.proto.caffe_pb2`` both work (the
second through a ``sys.modules`` alias).  Message and enum names are Caffe's (``NetParameter``,
``BlobProto``, ``Datum``, ``TRAIN``/``TEST``...); the protobuf package is ``converters.caffe`` so
that it never clashes with another generated ``caffe.proto`` in the same process.
"""
import sys

from ...proto import caffe_pb2

sys.modules.setdefault(__name__ + ".caffe_pb2", caffe_pb2)

__all__ = ["caffe_pb2"]
