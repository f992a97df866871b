"""The old home of the wire-format caffemodel reader/writer, kept so that its import paths work.

The code lives by job now: caffemodels in :mod:`converters.formats.weights` (``read_weight_layers``,
``read_weight_arrays``, ``write_weight_arrays``), BlobProto encoding and decoding in
:mod:`converters.formats.blobs` (``encode_blob``, ``blob_chunks``, ``blob_array_from_bytes``), the
protobuf wire primitives in :mod:`converters.formats.wire` (``encode_varint``, ``field_header``),
file sniffing in :mod:`converters.formats.files` (``describe_magic``).  Nothing is defined here.
"""
from .blobs import blob_array_from_bytes, blob_chunks, encode_blob, raw_blob_array, shape_problem
from .files import describe_magic
from .weights import LayerWeights, WeightArrays, read_weight_arrays, read_weight_layers, write_weight_arrays
from .wire import encode_varint, field_header

__all__ = ["LayerWeights", "WeightArrays", "read_weight_layers", "read_weight_arrays",
           "write_weight_arrays", "blob_array_from_bytes", "encode_blob", "blob_chunks", "field_header",
           "encode_varint", "describe_magic", "raw_blob_array", "shape_problem"]
