"""Caffe file formats, read and written without pycaffe or protoc: nets, solvers, caffemodels,
binaryproto means and LMDBs of Datums.  No torch here.

Modules, one job each: ``prototxt`` (text nets/solvers, upgrades, NetState rules), ``weights``
(caffemodels: through protobuf, or names/types/blobs straight from the wire for big files; the
streaming writers), ``blobs`` (BlobProto <-> arrays, the one blob encoder, binaryproto means),
``wire`` (protobuf wire primitives, the one varint encoder), ``files`` (opening and reading files
with clear errors, atomic writes), ``lmdb_io`` (Datum LMDBs, convert_imageset,
compute_image_mean), ``images`` (the image read), ``errors`` (CaffeFormatError).
``fastweights`` only re-exports, for old import paths.
"""
from ..proto import caffe_pb2
from .errors import CaffeFormatError
from .blobs import (array_to_blob, blob_chunks, blob_shape, blob_to_array, encode_blob, read_blob, read_mean,
                    write_mean)
from .files import atomic_write_bytes, atomic_writer, read_binary
from .lmdb_io import (ImagesetResult, LmdbInfo, array_to_datum, compute_image_mean,
                      convert_imageset, datum_to_array, iter_lmdb, lmdb_info, read_imageset_list,
                      release_env, shared_env, write_lmdb)
from .prototxt import (filter_net, layer_included, make_state, parse_net, read_net, read_solver,
                       state_meets_rule, upgrade_net)
from .weights import (LayerWeights, WeightArrays, parse_weights, read_weight_arrays, read_weight_layers,
                      read_weights, write_layer, write_weight_arrays, write_weights)
from .wire import encode_varint, field_header

__all__ = [
    "caffe_pb2", "CaffeFormatError", "filter_net", "layer_included", "make_state", "parse_net",
    "read_net", "read_solver", "state_meets_rule", "upgrade_net", "array_to_blob",
    "atomic_write_bytes", "atomic_writer", "blob_shape", "blob_to_array", "parse_weights",
    "read_blob", "read_mean", "read_weights", "write_mean", "write_weights",
    "LayerWeights", "WeightArrays", "read_weight_arrays", "read_weight_layers",
    "write_weight_arrays", "write_layer", "blob_chunks", "encode_blob", "encode_varint", "field_header",
    "read_binary",
    "ImagesetResult", "LmdbInfo", "array_to_datum", "compute_image_mean", "convert_imageset",
    "datum_to_array", "iter_lmdb", "release_env", "shared_env", "lmdb_info", "read_imageset_list", "write_lmdb",
]
