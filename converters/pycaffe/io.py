"""pycaffe's ``caffe.io``: image loading, resizing, 10-crop oversampling, the ``Transformer`` and
BlobProto / Datum conversions, with pycaffe's conventions.

Conventions kept: images are H x W x K float arrays; ``load_image`` returns RGB in [0, 1] (as
scikit-image's ``img_as_float``); the ``Transformer`` turns them into the net's K x H x W layout
in the order transpose -> channel swap -> raw scale -> mean -> input scale; ``oversample`` gives
the 4 corners and the centre (offsets ``int(centre - crop/2)``) then their mirrors;
``blobproto_to_array`` returns float64 like pycaffe (the file holds float32).

Differences from pycaffe (it uses scikit-image and SciPy; this module uses OpenCV):
* ``load_image`` decodes with OpenCV (``IMREAD_UNCHANGED``, no EXIF rotation, as scikit-image):
  PNG/BMP/PPM pixels are identical; JPEG decoders may differ by a grey level on some pixels
  (libjpeg-turbo here vs. whatever PIL/imageio use).  ``color=False`` converts colour images with
  scikit-image's ``rgb2gray`` weights (0.2125, 0.7154, 0.0721).
* ``resize_image`` uses ``cv2.resize`` (INTER_NEAREST / INTER_LINEAR / INTER_CUBIC for
  ``interp_order`` 0 / 1 / >= 2).  Interior pixels of a bilinear resize equal scikit-image's
  ``resize(order=1, mode='constant')`` up to float rounding (same half-pixel grid, no
  anti-aliasing); pixels within half a source pixel of the border differ when enlarging
  (scikit-image blends with the constant 0 outside, OpenCV replicates the edge).
* ``datum_to_array`` also decodes *encoded* Datums (pycaffe's fails on them).
"""
from __future__ import annotations

import os

import numpy as np

from ..proto import caffe_pb2

__all__ = ["Transformer", "load_image", "resize_image", "oversample", "blobproto_to_array",
           "array_to_blobproto", "arraylist_to_blobprotovector_str", "blobprotovector_str_to_arraylist",
           "array_to_datum", "datum_to_array"]


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is a dependency of the formats package
        raise ImportError("caffe.io image functions need OpenCV (pip install opencv-python-headless)") from exc
    return cv2


# ---------------------------------------------------------------------------- blobs and datums
def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """The data (or diff) of a BlobProto as a float64 array: legacy (num, channels, height, width)
    dims when any of them is set, else ``shape.dim``."""
    if return_diff:
        data = np.asarray(blob.diff, dtype=np.float64)
    else:
        from ..formats import blob_to_array
        data = blob_to_array(blob).astype(np.float64).ravel()   # fast for big blobs; float32 values
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return data.reshape(blob.num, blob.channels, blob.height, blob.width)
    return data.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr, diff=None):
    """A BlobProto with ``shape.dim`` = ``arr.shape`` and the values (no sanity checks, as pycaffe)."""
    from ..formats import array_to_blob

    arr = np.asarray(arr)
    blob = array_to_blob(arr.astype(np.float32))
    if diff is not None:
        blob.diff.extend(np.asarray(diff, dtype=np.float64).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """A serialized BlobProtoVector of the arrays."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(s: bytes) -> list:
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(s)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A raw Datum from a C x H x W array: uint8 -> ``data`` bytes, anything else -> ``float_data``."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError("Incorrect array shape.")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(float).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum) -> np.ndarray:
    """The Datum's image as C x H x W: uint8 for byte data, float64 for ``float_data`` (as pycaffe);
    encoded Datums are decoded (OpenCV, as Caffe's data layer without force_color/force_gray)."""
    if datum.encoded:
        from ..formats import datum_to_array as decode
        return decode(datum, mode="native")
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(datum.channels, datum.height,
                                                                  datum.width).copy()
    return np.asarray(datum.float_data, dtype=np.float64).reshape(datum.channels, datum.height, datum.width)


# ---------------------------------------------------------------------------- images
def _as_float(img: np.ndarray) -> np.ndarray:
    """scikit-image's img_as_float: unsigned ints scaled to [0, 1], floats kept, as float64."""
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    if img.dtype == bool:
        return img.astype(np.float64)
    return img.astype(np.float64, copy=False)


def load_image(filename, color: bool = True) -> np.ndarray:
    """Load an image as an H x W x 3 (``color``) or H x W x 1 float array in [0, 1], RGB order.

    ``filename`` is a path or a binary file-like object (pycaffe hands it to skimage's
    ``imread``, which accepts both; e.g. the nsfw model's script passes a ``BytesIO``).
    """
    cv2 = _cv2()
    if hasattr(filename, "read"):
        raw = filename.read()
        if isinstance(raw, str):
            raise TypeError("load_image needs a binary file object (open(..., 'rb'), BytesIO)")
        path = getattr(filename, "name", None) or "<file object>"
        data = np.frombuffer(bytes(raw), dtype=np.uint8)
    else:
        path = os.fspath(filename)
        data = np.fromfile(path, dtype=np.uint8)   # raises FileNotFoundError for a missing file
    if data.size == 0:
        raise ValueError(f"{path}: empty file, not an image")
    from ..formats.image_header import check_pixels
    check_pixels(data, str(path))
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cannot decode the image")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, [2, 1, 0, 3]]             # BGRA -> RGBA
        else:
            img = img[:, :, 2::-1]                    # BGR -> RGB
    img = _as_float(img)
    if not color and img.ndim == 3:
        rgb = img[:, :, :3]
        img = rgb @ np.array([0.2125, 0.7154, 0.0721])
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def _cv_resize(im: np.ndarray, new_dims, interp_order: int) -> np.ndarray:
    cv2 = _cv2()
    h, w = int(new_dims[0]), int(new_dims[1])
    interp = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR}.get(int(interp_order), cv2.INTER_CUBIC)
    src = np.ascontiguousarray(im, dtype=np.float64 if im.dtype == np.float64 else np.float32)
    k = src.shape[2]
    if k <= 4:
        out = cv2.resize(src, (w, h), interpolation=interp)
    else:   # OpenCV resizes up to 4 channels at once on every build: do the rest in groups
        out = np.concatenate([cv2.resize(np.ascontiguousarray(src[:, :, i:i + 4]), (w, h),
                                         interpolation=interp).reshape(h, w, -1)
                              for i in range(0, k, 4)], axis=2)
    return out.reshape(h, w, k)


def resize_image(im, new_dims, interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K image to ``new_dims`` (height, width); returns float32.

    As pycaffe: images are scaled to [0, 1] for the resize and back; a constant image is returned
    as that constant.  Interpolation: see the module docstring.
    """
    im = np.asarray(im)
    if im.ndim == 2:
        im = im[:, :, np.newaxis]
    im_min, im_max = im.min(), im.max()
    if im_max > im_min:
        std = (im - im_min) / (im_max - im_min)
        resized = _cv_resize(std, new_dims, interp_order) * (im_max - im_min) + im_min
    else:
        resized = np.empty((int(new_dims[0]), int(new_dims[1]), im.shape[-1]), dtype=np.float32)
        resized.fill(im_min)
        return resized
    return resized.astype(np.float32)


def oversample(images, crop_dims) -> np.ndarray:
    """pycaffe's 10-crop: for every H x W x K image, the 4 corner crops and the centre crop (start
    ``int(H/2 - crop_h/2)``), then the same five mirrored left-right.  Returns float32
    (10 * N, crop_h, crop_w, K)."""
    images = list(images)
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    im_center = im_shape[:2] / 2.0
    boxes = np.empty((5, 4), dtype=int)
    k = 0
    for i in (0, im_shape[0] - crop_dims[0]):
        for j in (0, im_shape[1] - crop_dims[1]):
            boxes[k] = (i, j, i + crop_dims[0], j + crop_dims[1])
            k += 1
    # float boxes assigned into an int array: truncation, as pycaffe (127.5-113.5 -> 14)
    boxes[4] = np.tile(im_center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    boxes = np.tile(boxes, (2, 1))
    crops = np.empty((10 * len(images), int(crop_dims[0]), int(crop_dims[1]), int(im_shape[-1])),
                     dtype=np.float32)
    ix = 0
    for im in images:
        for box in boxes:
            crops[ix] = im[box[0]:box[2], box[1]:box[3], :]
            ix += 1
        crops[ix - 5:ix] = crops[ix - 5:ix, :, ::-1, :]   # the second five are mirrored
    return crops


# ---------------------------------------------------------------------------- Transformer
class Transformer:
    """pycaffe's input preprocessing for the blobs in ``inputs`` (name -> N x K x H x W shape).

    ``preprocess``: resize to the blob's H x W if needed, transpose, channel swap, raw scale,
    subtract the mean, input scale.  ``deprocess`` undoes it.
    """

    def __init__(self, inputs: dict):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def __check_input(self, in_):
        if in_ not in self.inputs:
            raise Exception(f"{in_} is not one of the net inputs: {self.inputs}")

    def preprocess(self, in_, data) -> np.ndarray:
        """An H' x W' x K image -> K x H x W float32 array for blob ``in_``."""
        self.__check_input(in_)
        caffe_in = np.asarray(data).astype(np.float32, copy=False)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        in_dims = tuple(self.inputs[in_][2:])
        if tuple(caffe_in.shape[:2]) != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[list(channel_swap), :, :]
        if raw_scale is not None:
            caffe_in = caffe_in * raw_scale
        if mean is not None:
            caffe_in = caffe_in - mean
        if input_scale is not None:
            caffe_in = caffe_in * input_scale
        return caffe_in if caffe_in.dtype == np.float32 else caffe_in.astype(np.float32)

    def deprocess(self, in_, data) -> np.ndarray:
        """Invert ``preprocess`` (except the resize) for display."""
        self.__check_input(in_)
        decaf_in = np.array(data, copy=True).squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in = decaf_in / input_scale
        if mean is not None:
            decaf_in = decaf_in + mean
        if raw_scale is not None:
            decaf_in = decaf_in / raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_, order):
        """Axis order of the output, e.g. (2, 0, 1) for H x W x K -> K x H x W."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise Exception("Transpose order needs to have the same number of dimensions as the input.")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """Channel order after the transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise Exception("Channel swap needs to have the same number of dimensions as the input channels.")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Multiply by ``scale`` (e.g. 255 for [0, 1] images) before the mean is subtracted."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Mean to subtract: per channel (K,) or a full K x H x W (or H x W) array of the blob's size."""
        self.__check_input(in_)
        mean = np.asarray(mean)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise ValueError("Mean channels incompatible with input.")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise ValueError("Mean shape invalid")
            if tuple(ms) != tuple(self.inputs[in_][1:]):
                raise ValueError("Mean shape incompatible with input shape.")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply by ``scale`` after the mean is subtracted."""
        self.__check_input(in_)
        self.input_scale[in_] = scale
