"""LMDBs of serialized ``caffe.Datum``: read, write, ``convert_imageset``, ``compute_image_mean``.

What it owns: Caffe's image-database format and the two Caffe tools that make and summarise it,
reproduced from their C++ behaviour (BVLC Caffe 1.0, ``tools/convert_imageset.cpp``,
``tools/compute_image_mean.cpp``, ``src/caffe/util/io.cpp``):

* arrays are uint8 ``(C, H, W)`` in OpenCV's **BGR** channel order (``CVMatToDatum`` writes the
  interleaved ``HWC`` Mat channel by channel);
* keys are ``'%08d_' % line_index + filename`` (``caffe::format_int(line_id, 8) + "_" + name``);
* readers iterate in key (byte) order, as LMDB cursors do;
* images are decoded with OpenCV (``cv::imread``/``cv::imdecode``) and resized with
  ``cv::resize`` (INTER_LINEAR), so pixels match Caffe's bit for bit with the same libjpeg.

Readers open databases read-only with ``lock=False``.  Errors are :class:`CaffeFormatError`
naming the database (and the entry key).  No torch here.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from google.protobuf.message import DecodeError

from ..proto import caffe_pb2 as pb
from .images import read_image, squash
from .errors import CaffeFormatError
from .image_header import check_pixels
from .lmdb_check import LmdbStructureError, check_lmdb_file

__all__ = ["shared_env", "release_env", "iter_lmdb", "lmdb_info", "LmdbInfo", "write_lmdb", "convert_imageset",
           "ImagesetResult", "compute_image_mean", "datum_to_array", "array_to_datum",
           "read_imageset_list"]

_DECODE_MODES = ("color", "native", "gray")


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is a dependency
        raise ImportError("encoded Datums and convert_imageset need OpenCV "
                          "(pip install opencv-python-headless)") from exc
    return cv2


def _lmdb():
    try:
        import lmdb
    except ImportError as exc:  # pragma: no cover - lmdb is a dependency
        raise ImportError("LMDB support needs the 'lmdb' package (pip install lmdb)") from exc
    return lmdb


# ------------------------------------------------------------------ Datum <-> array
def _mat_to_chw(img: np.ndarray) -> np.ndarray:
    """OpenCV Mat (H, W) or (H, W, C) -> (C, H, W), Caffe's CVMatToDatum layout."""
    if img.ndim == 2:
        return img[None].copy()
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def datum_to_array(datum: pb.Datum, mode: str = "color", path=None, key=None) -> np.ndarray:
    """The image of one Datum as a ``(C, H, W)`` array (uint8; float32 for ``float_data`` Datums).

    Encoded Datums are decoded with ``cv2.imdecode``: ``mode="color"`` is Caffe's
    ``DecodeDatumToCVMat(datum, is_color=true)`` (IMREAD_COLOR: grey -> 3 equal channels, alpha
    dropped), ``"gray"`` the same with is_color false, ``"native"`` is
    ``DecodeDatumToCVMatNative`` (IMREAD_UNCHANGED, what the Data layer does without
    ``force_color``/``force_gray``).  Raw Datums are returned as stored.
    """
    where = f"entry {key!r}: " if key is not None else ""
    if mode not in _DECODE_MODES:
        raise ValueError(f"mode must be one of {_DECODE_MODES}, got {mode!r}")
    if datum.encoded:
        cv2 = _cv2()
        flag = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE,
                "native": cv2.IMREAD_UNCHANGED}[mode]
        buf = np.frombuffer(datum.data, dtype=np.uint8)
        try:
            check_pixels(datum.data, f"{where}encoded Datum")
        except ValueError as exc:
            raise CaffeFormatError(path, str(exc)) from None
        try:
            img = cv2.imdecode(buf, flag) if buf.size else None
        except cv2.error as exc:
            raise CaffeFormatError(path, f"{where}encoded Datum could not be decoded "
                                         f"({' '.join(str(exc).split())[-160:]})") from None
        if img is None:
            raise CaffeFormatError(path, f"{where}encoded Datum could not be decoded as an image "
                                         f"({len(datum.data)} bytes)")
        if img.dtype != np.uint8:
            # Caffe's CVMatToDatum: CHECK_EQ(cv_img.depth(), CV_8U) << "Image data type must be unsigned byte"
            raise CaffeFormatError(path, f"{where}encoded image has {img.dtype} pixels; Caffe "
                                         "accepts unsigned bytes only")
        return _mat_to_chw(img)
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise CaffeFormatError(path, f"{where}not a caffe Datum (channels={c}, height={h}, "
                                     f"width={w}, {len(datum.data)} data bytes, not encoded)")
    n = c * h * w
    if len(datum.data) == n:
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w).copy()
    if len(datum.data) == 0 and len(datum.float_data) == n:
        return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)
    raise CaffeFormatError(path, f"{where}not a caffe Datum: {c}x{h}x{w} = {n} values expected, "
                                 f"found {len(datum.data)} data bytes and "
                                 f"{len(datum.float_data)} float_data values")


def array_to_datum(array, label: int = 0) -> pb.Datum:
    """A raw Datum from a ``(C, H, W)`` uint8 array (or ``(H, W)``: one channel), as
    ``CVMatToDatum`` + ``set_label`` make it (``encoded`` is set to false explicitly)."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"a Datum array must be (C, H, W), got shape {arr.shape}")
    datum = pb.Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    datum.label = int(label)
    datum.encoded = False
    return datum


def _parse_datum(value: bytes, path, key) -> pb.Datum:
    datum = pb.Datum()
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError, ValueError) as exc:
        why = " ".join(str(exc).split())
        raise CaffeFormatError(path, f"entry {key!r}: not a caffe Datum ({why})") from None
    return datum


# ------------------------------------------------------------------ opening
def _lmdb_dir(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise CaffeFormatError(path, "not found (expected an LMDB folder)")
    if p.is_file():
        if p.name == "data.mdb":
            return p.parent
        raise CaffeFormatError(path, "not a directory: an LMDB is a folder holding data.mdb")
    if not (p / "data.mdb").is_file():
        raise CaffeFormatError(path, "directory is not an LMDB (no data.mdb in it)")
    return p


def _open_env(path):
    lmdb = _lmdb()
    folder = _lmdb_dir(path)
    try:
        # Caffe's db_lmdb opens read-only databases with MDB_RDONLY | MDB_NOTLS; we also skip
        # the lock file so read-only folders (and ones another process writes) can be read.
        env = lmdb.open(str(folder), readonly=True, lock=False, subdir=True)
    except lmdb.Error as exc:
        raise CaffeFormatError(path, f"not a valid LMDB ({exc})") from None
    try:
        _check_not_truncated(env, folder / "data.mdb", path)
    except BaseException:
        env.close()
        raise
    return env


def _check_not_truncated(env, data_file: Path, path) -> None:
    """Refuse a ``data.mdb`` shorter than the pages its meta page says were written.

    python-lmdb maps the file into memory; reading a page past the end of a truncated file
    is a SIGBUS that kills the interpreter with no message (LMDB itself never checks).  The
    last committed transaction uses pages ``0 .. last_pgno``, so a complete file holds at
    least ``(last_pgno + 1) * psize`` bytes.
    """
    lmdb = _lmdb()
    try:
        last_pgno, psize = env.info()["last_pgno"], env.stat()["psize"]
    except lmdb.Error as exc:
        raise CaffeFormatError(path, f"not a valid LMDB ({exc})") from None
    need = (int(last_pgno) + 1) * int(psize)
    have = data_file.stat().st_size
    if have < need:
        raise CaffeFormatError(path, f"truncated LMDB: data.mdb holds {have:,} bytes but its "
                                     f"{last_pgno + 1} pages need {need:,}")
    # a bit flip in a page number or a value size also makes the cursor read past the file
    try:
        check_lmdb_file(data_file)
    except LmdbStructureError as exc:
        raise CaffeFormatError(path, f"corrupt LMDB: {exc}") from None
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read data.mdb: {exc.strerror}") from None


def _decode_key(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogateescape")


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_env(path):
    """The process's one read-only environment of an LMDB folder.

    python-lmdb refuses to open the same folder twice in one process, and Caffe nets read the same
    database from several places (a TRAIN and a TEST Data layer, an evaluation after training), so
    every reader in this package goes through this registry.  :func:`release_env` closes one;
    writers call it before replacing a folder, so no reader keeps serving the old data.
    """
    folder = _lmdb_dir(path)
    key = os.path.realpath(folder)
    with _SHARED_LOCK:
        env = _SHARED.get(key)
        if env is None:
            env = _SHARED[key] = _open_env(folder)
        return env


def release_env(path) -> None:
    """Close the shared environment of ``path`` (if one is open)."""
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        env = _SHARED.pop(key, None)
    if env is not None:
        env.close()


def _iter_raw(path) -> Iterator[tuple[str, bytes]]:
    lmdb = _lmdb()
    env = shared_env(path)
    try:
        if env.stat()["entries"] == 0:
            raise CaffeFormatError(path, "LMDB holds no entries")
        with env.begin() as txn:
            for key, value in txn.cursor():
                yield _decode_key(key), value
    except lmdb.Error as exc:
        raise CaffeFormatError(path, f"corrupt LMDB ({exc})") from None


def iter_lmdb(path, mode: str = "color") -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(key, label, array)`` for every Datum of a Caffe LMDB, in key order.

    ``array`` is uint8 ``(C, H, W)`` BGR (float32 for ``float_data`` Datums).  Encoded Datums
    are decoded as ``datum_to_array`` describes (default ``"color"``: IMREAD_COLOR, 3 channels).
    """
    for key, value in _iter_raw(path):
        datum = _parse_datum(value, path, key)
        yield key, int(datum.label), datum_to_array(datum, mode, path, key)


@dataclass
class LmdbInfo:
    """Summary of a Datum LMDB (see :func:`lmdb_info`)."""
    path: str
    count: int
    shape: tuple[int, ...]            # (C, H, W) of the first Datum (decoded if encoded)
    encoded: bool                     # whether the first Datum is encoded (JPEG/PNG bytes)
    labels: dict[int, int]            # label -> number of Datums, sorted by label
    first_key: str
    last_key: str
    shapes: dict[tuple, int] = field(default_factory=dict)  # raw Datums: shape -> count
    n_encoded: int = 0

    def describe(self) -> str:
        lines = [f"LMDB {self.path}", f"  entries      {self.count}",
                 f"  datum shape  {'x'.join(map(str, self.shape))} (C x H x W, BGR)"
                 + (" after decoding" if self.encoded else ""),
                 f"  encoded      {self.n_encoded} of {self.count}",
                 f"  keys         {self.first_key!r} .. {self.last_key!r}"]
        if len(self.shapes) > 1:
            lines.append("  raw shapes   " + ", ".join(f"{'x'.join(map(str, s))}: {n}"
                                                       for s, n in self.shapes.items()))
        lines.append("  labels       " + ", ".join(f"{k}: {v}" for k, v in self.labels.items()))
        return "\n".join(lines)


def lmdb_info(path) -> LmdbInfo:
    """Entry count, datum shape, label histogram and encoding of a Caffe Datum LMDB.

    Every entry is parsed (labels, raw shapes); only the first encoded image is decoded.
    """
    count, labels, shapes, n_enc = 0, Counter(), Counter(), 0
    first_key = last_key = None
    shape, encoded = None, False
    for key, value in _iter_raw(path):
        datum = _parse_datum(value, path, key)
        if datum.encoded:
            n_enc += 1
            if shape is None:
                shape, encoded = datum_to_array(datum, "native", path, key).shape, True
        else:
            dims = (datum.channels, datum.height, datum.width)
            n = dims[0] * dims[1] * dims[2]
            if min(dims) <= 0 or not (len(datum.data) == n or
                                      (not datum.data and len(datum.float_data) == n)):
                datum_to_array(datum, "native", path, key)  # raises the precise error
            if shape is None:
                shape = dims
            shapes[dims] += 1
        labels[int(datum.label)] += 1
        first_key = key if first_key is None else first_key
        last_key = key
        count += 1
    return LmdbInfo(str(path), count, tuple(shape), encoded, dict(sorted(labels.items())),
                    first_key, last_key, dict(shapes), n_enc)


# ------------------------------------------------------------------ writing
class _LmdbWriter:
    """Write into a fresh LMDB folder built beside ``out`` and renamed into place on success."""

    def __init__(self, out, overwrite: bool = False, batch: int = 1000):
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            # convert_imageset: CHECK_EQ(mkdir(source, 0744), 0) << "mkdir " << source << " failed"
            raise CaffeFormatError(out, "already exists (Caffe refuses to write into an existing "
                                        "database; pass overwrite=True to replace it)")
        self.overwrite, self.batch = overwrite, batch
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="." + self.out.name + ".", suffix=".tmp",
                                         dir=self.out.parent))
        # mkdtemp makes 0700; the finished database gets a normal folder's mode
        from .files import current_umask
        os.chmod(self.tmp, 0o777 & ~current_umask())
        self.map_size = 1 << 30
        try:
            self.env = _lmdb().open(str(self.tmp), map_size=self.map_size, subdir=True,
                                    meminit=False)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.pending: list[tuple[bytes, bytes]] = []
        self.count = 0

    def put(self, key, value: bytes) -> None:
        self.pending.append((key.encode("utf-8", "surrogateescape") if isinstance(key, str)
                             else bytes(key), value))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        lmdb = _lmdb()
        while self.pending:
            try:
                # convert_imageset commits every 1000 Datums
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                self.count += len(self.pending)
                self.pending = []
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def commit(self) -> None:
        self.flush()
        self.env.sync(True)
        self.env.close()
        release_env(self.out)
        if self.out.exists():
            trash = Path(tempfile.mkdtemp(prefix="." + self.out.name + ".", suffix=".old",
                                          dir=self.out.parent))
            os.replace(self.out, trash / self.out.name)
            os.replace(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)

    def abort(self) -> None:
        try:
            self.env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def write_lmdb(path, items: Iterable, *, overwrite: bool = False) -> int:
    """Write ``(key, value)`` items into a new LMDB folder, atomically; returns the entry count.

    ``value`` is a :class:`caffe_pb2.Datum`, a ``(label, array)`` pair (raw Datum from a uint8
    ``(C, H, W)`` array, see :func:`array_to_datum`) or already serialized ``bytes``.
    """
    writer = _LmdbWriter(path, overwrite)
    try:
        for key, value in items:
            if isinstance(value, pb.Datum):
                raw = value.SerializeToString()
            elif isinstance(value, (bytes, bytearray, memoryview)):
                raw = bytes(value)
            else:
                label, arr = value
                raw = array_to_datum(arr, label).SerializeToString()
            writer.put(key, raw)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer.count


# ------------------------------------------------------------------ convert_imageset
def read_imageset_list(listfile) -> list[tuple[str, int]]:
    """The ``(filename, label)`` lines of a convert_imageset list file.

    Caffe 1.0: ``pos = line.find_last_of(' '); label = atoi(line.substr(pos + 1));
    filename = line.substr(0, pos)`` - so file names may contain spaces.  A trailing ``\\r`` is
    dropped (Windows line ends); a line without a label is an error here (Caffe would read
    label 0 from ``atoi`` of the whole line and then fail to open the file).
    """
    try:
        text = Path(listfile).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaffeFormatError(listfile, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaffeFormatError(listfile, f"cannot read the image list: {exc}") from None
    raw_lines = text.split("\n")
    while raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()   # blank lines at the end of the file
    lines = []
    for lineno, line in enumerate(raw_lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            # Caffe's getline loop would turn it into an unreadable file "" that still uses up
            # a line index (shifting every later key); refuse instead of guessing
            raise CaffeFormatError(listfile, "empty line in the image list", line=lineno)
        pos = line.rfind(" ")
        try:
            label = int(line[pos + 1:]) if pos >= 0 else None
        except ValueError:
            label = None
        if label is None:
            raise CaffeFormatError(listfile, f"expected '<file> <integer label>', got {line!r}",
                                   line=lineno)
        lines.append((line[:pos], label))
    return lines


def _match_ext(filename: str, encoding: str) -> bool:
    # Caffe 1.0 io.cpp matchExt: ext = fn.substr(fn.rfind('.')) - *with* the dot - compared
    # lower-cased with the encoding; "jpg" also matches "jpeg".  With --encode_type=png the
    # comparison ".png" == "png" never holds; with a guessed encoding (".png") it does.
    p = filename.rfind(".")
    ext = (filename[p:] if p >= 0 else filename).lower()
    enc = encoding.lower()
    return ext == enc or (enc == "jpg" and ext == "jpeg")


@dataclass
class ImagesetResult:
    """What :func:`convert_imageset` wrote."""
    path: str
    count: int
    skipped: list[str]            # files OpenCV could not read (Caffe logs and skips them)
    keys: list[str]


def convert_imageset(root, listfile, out_path, resize_height: int = 0, resize_width: int = 0,
                     shuffle: bool = False, encoded: bool = False, encode_type: str = "",
                     gray: bool = False, seed=None, check_size: bool = False,
                     overwrite: bool = False, progress: bool = True) -> ImagesetResult:
    """Caffe's ``convert_imageset ROOT/ LISTFILE DB`` (LMDB backend), atomically.

    * lines ``<file> <label>``; ``shuffle`` permutes them first (Caffe's RNG is not
      reproducible; ``seed`` seeds Python's ``random.Random`` instead);
    * ``cv2.imread(root/file, IMREAD_COLOR or IMREAD_GRAYSCALE if gray)``; unreadable files are
      skipped (they still use up their line index, as in Caffe);
    * ``cv2.resize(img, (resize_width, resize_height))`` (INTER_LINEAR) when both are > 0;
    * raw Datum (channels, height, width, CHW bytes, label, encoded=false), or with ``encoded``
      / ``encode_type``: Caffe's ReadImageToDatum - the original file bytes when nothing was
      resized, the channel count matches and the extension matches the encoding (which in
      Caffe 1.0 only happens for a *guessed* encoding, see :func:`_match_ext`), otherwise
      ``cv::imencode("." + encoding, image)`` of the (resized) image;
    * key ``'%08d_' % line_index + filename``.

    Caffe joins ``ROOT + filename`` as strings; here ``root`` is a folder joined with the name.
    """
    cv2 = _cv2()
    lines = read_imageset_list(listfile)
    if shuffle:
        random.Random(seed).shuffle(lines)
    is_color = not gray
    resize = resize_height > 0 and resize_width > 0
    # convert_imageset: "encode_type specified, assuming encoded=true"
    do_encode = bool(encoded or encode_type)
    writer = _LmdbWriter(out_path, overwrite)
    skipped, keys = [], []
    data_size = None
    try:
        iterator = enumerate(lines)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(lines), desc=f"convert_imageset {Path(out_path).name}",
                       unit="img", disable=None, leave=False)
        for line_id, (filename, label) in iterator:
            if bar is not None:
                bar.update(1)
            enc = encode_type
            if do_encode and not enc:
                # Guess the encoding from the file name: Caffe 1.0 keeps the dot (".jpg")
                p = filename.rfind(".")
                if p < 0:
                    raise CaffeFormatError(listfile, f"cannot guess the encoding of {filename!r} "
                                                     "(no extension); pass encode_type",
                                           line=line_id + 1)
                enc = filename[p:].lower()
            full = os.path.join(str(root), filename)
            img = read_image(full, is_color) if os.path.isfile(full) else None
            if img is None:
                # io.cpp ReadImageToCVMat: LOG(ERROR) << "Could not open or find file"; skipped
                warnings.warn(f"{full}: could not open or find the image; skipped", stacklevel=2)
                skipped.append(filename)
                continue
            if resize:
                img = squash(img, resize_height, resize_width)
            channels = 1 if img.ndim == 2 else img.shape[2]
            if do_encode:
                datum = pb.Datum()
                if (channels == 3) == is_color and not resize and _match_ext(filename, enc):
                    with open(full, "rb") as fh:   # ReadFileToDatum: the file's own bytes
                        datum.data = fh.read()
                else:
                    # cv::imencode("." + encoding): OpenCV picks the codec after the last dot,
                    # so the guessed ".jpg" ("..jpg") works too
                    ok, buf = cv2.imencode("." + enc, img)
                    if not ok:
                        raise CaffeFormatError(listfile, f"OpenCV cannot encode as {enc!r}",
                                               line=line_id + 1)
                    datum.data = buf.tobytes()
                datum.label = label
                datum.encoded = True
            else:
                datum = array_to_datum(_mat_to_chw(img), label)
            if check_size:
                # check_size: every Datum must have the size of the first one
                size = datum.channels * datum.height * datum.width
                if data_size is None:
                    data_size = size
                elif size != data_size:
                    raise CaffeFormatError(listfile, f"{filename}: datum size {size} differs "
                                                     f"from the first one ({data_size})",
                                           line=line_id + 1)
            key = "%08d_%s" % (line_id, filename)   # caffe::format_int(line_id, 8) + "_" + name
            writer.put(key, datum.SerializeToString())
            keys.append(key)
        if bar is not None:
            bar.close()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return ImagesetResult(str(out_path), writer.count, skipped, keys)


# ------------------------------------------------------------------ compute_image_mean
def compute_image_mean(lmdb_path, out_path=None) -> np.ndarray:
    """Caffe's ``compute_image_mean``: the per-pixel mean of all Datums, float32 ``(C, H, W)``.

    As in the tool: Datums are visited in key order, encoded ones decoded natively
    (``DecodeDatumNative``), each value is added to a float32 sum (``sum_blob`` is a
    BlobProto, whose ``data`` is float) and the sum is divided by the count in float32.  Every
    Datum must hold as many values as the first ("Incorrect data field size").  With
    ``out_path`` the mean is also written as ``mean.binaryproto`` (1 x C x H x W legacy dims).
    """
    total = None
    shape = None
    count = 0
    for key, value in _iter_raw(lmdb_path):
        datum = _parse_datum(value, lmdb_path, key)
        arr = datum_to_array(datum, "native", lmdb_path, key)
        if total is None:
            shape = arr.shape
            total = np.zeros(arr.size, dtype=np.float32)
        elif arr.size != total.size:
            raise CaffeFormatError(lmdb_path, f"entry {key!r}: incorrect data field size "
                                              f"{arr.size} (the first Datum has {total.size})")
        # sum_blob.set_data(i, sum_blob.data(i) + (uint8_t)data[i]): float32 accumulation
        total += arr.reshape(-1).astype(np.float32, copy=False)
        count += 1
    # sum_blob.set_data(i, sum_blob.data(i) / count): float / int in float32
    mean = (total / np.float32(count)).astype(np.float32).reshape(shape)
    if out_path is not None:
        from .blobs import write_mean
        write_mean(mean, out_path)
    return mean
