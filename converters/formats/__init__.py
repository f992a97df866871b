"""Caffe file formats, read and written without pycaffe or protoc: nets, solvers, caffemodels,
binaryproto means and LMDBs of Datums.  No torch here."""
from ..proto import caffe_pb2
from .errors import CaffeFormatError
from .prototxt import (filter_net, layer_included, make_state, parse_net, read_net, read_solver,
                       state_meets_rule, upgrade_net)
from .weights import (array_to_blob, atomic_write_bytes, blob_shape, blob_to_array, parse_weights,
                      read_blob, read_mean, read_weights, write_mean, write_weights)

__all__ = [
    "caffe_pb2", "CaffeFormatError", "filter_net", "layer_included", "make_state", "parse_net",
    "read_net", "read_solver", "state_meets_rule", "upgrade_net", "array_to_blob",
    "atomic_write_bytes", "blob_shape", "blob_to_array", "parse_weights", "read_blob", "read_mean",
    "read_weights", "write_mean", "write_weights",
]
