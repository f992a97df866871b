"""Caffe file formats, read and written without pycaffe or protoc: nets, solvers, caffemodels,
binaryproto means and LMDBs of Datums.  No torch here.

Modules: ``prototxt`` (text nets/solvers, upgrades, NetState rules), ``weights`` (caffemodels and
binaryproto blobs through protobuf), ``fastweights`` (caffemodel arrays straight from the wire
format, for big files), ``lmdb_io`` (Datum LMDBs, convert_imageset, compute_image_mean),
``files`` (reading binary files, atomic writes), ``errors`` (CaffeFormatError).
"""
from ..proto import caffe_pb2
from .errors import CaffeFormatError
from .fastweights import (LayerWeights, WeightArrays, read_weight_arrays, read_weight_layers,
                          write_weight_arrays)
from .lmdb_io import (ImagesetResult, LmdbInfo, array_to_datum, compute_image_mean,
                      convert_imageset, datum_to_array, iter_lmdb, lmdb_info, read_imageset_list,
                      release_env, shared_env, write_lmdb)
from .prototxt import (filter_net, layer_included, make_state, parse_net, read_net, read_solver,
                       state_meets_rule, upgrade_net)
from .weights import (array_to_blob, atomic_write_bytes, atomic_writer, blob_shape, blob_to_array,
                      parse_weights, read_blob, read_mean, read_weights, write_mean, write_weights)

__all__ = [
    "caffe_pb2", "CaffeFormatError", "filter_net", "layer_included", "make_state", "parse_net",
    "read_net", "read_solver", "state_meets_rule", "upgrade_net", "array_to_blob",
    "atomic_write_bytes", "atomic_writer", "blob_shape", "blob_to_array", "parse_weights",
    "read_blob", "read_mean", "read_weights", "write_mean", "write_weights",
    "LayerWeights", "WeightArrays", "read_weight_arrays", "read_weight_layers",
    "write_weight_arrays",
    "ImagesetResult", "LmdbInfo", "array_to_datum", "compute_image_mean", "convert_imageset",
    "datum_to_array", "iter_lmdb", "release_env", "shared_env", "lmdb_info", "read_imageset_list", "write_lmdb",
]
