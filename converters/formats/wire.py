"""The protobuf wire format, for the readers and writers that skip protobuf objects on big files.

What it owns: the primitives and nothing Caffe-specific: byte sources over a file (read at disk
speed, ``readinto`` straight into arrays) or a buffer, varints, field keys, skipping unknown fields
(groups included, with protobuf's nesting limit), decoding runs of non-packed fixed-width values,
and the encoders (``encode_varint``, ``field_key``, ``field_header``: the package's only varint
encoder); :func:`parse_message` parses a whole protobuf message with one clear error.
BlobProto messages are :mod:`.blobs`', caffemodels :mod:`.weights`'.  No torch here.
"""
from __future__ import annotations

import io

import numpy as np
from google.protobuf.message import DecodeError

from .errors import CaffeFormatError
from .files import describe_magic

_MAX_GROUP_DEPTH = 100   # protobuf's default recursion limit


class Corrupt(Exception):
    """A wire-format violation (the format readers turn it into a CaffeFormatError with path and layer)."""


# ------------------------------------------------------------------ byte sources
class FileSource:
    """Sequential reader over a binary file that tracks its position."""

    def __init__(self, fh, size: int):
        self.fh, self.pos, self.size = fh, 0, size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise Corrupt(f"unexpected end of file at byte {self.pos + len(data)} "
                           f"(needed {n} more bytes; the file is truncated)")
        self.pos += n
        return data

    def byte(self) -> int:
        b = self.fh.read(1)
        if not b:
            raise Corrupt(f"unexpected end of file at byte {self.pos} (the file is truncated)")
        self.pos += 1
        return b[0]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise Corrupt(f"field of {n} bytes at byte {self.pos} runs past the end of the file "
                           f"({self.size} bytes; truncated)")
        self.fh.seek(n, io.SEEK_CUR)
        self.pos += n

    def array(self, nbytes: int, dtype: np.dtype) -> np.ndarray:
        if self.pos + nbytes > self.size:
            raise Corrupt(f"field of {nbytes} bytes at byte {self.pos} runs past the end of the "
                           f"file ({self.size} bytes; truncated)")
        arr = np.empty(nbytes // dtype.itemsize, dtype=dtype)
        view = memoryview(arr).cast("B")
        got = 0
        while got < nbytes:   # readinto straight into the array: the bytes are never held twice
            n = self.fh.readinto(view[got:])
            if not n:
                raise Corrupt(f"unexpected end of file at byte {self.pos + got} (truncated)")
            got += n
        self.pos += nbytes
        return arr

    def sub(self, n: int) -> "BytesSource":
        """The next ``n`` bytes as an in-memory source (for small messages)."""
        return BytesSource(self.read(n), base=self.pos - n)


class BytesSource:
    """The same interface over an in-memory buffer."""

    def __init__(self, buf, base: int = 0):
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
        self.pos, self.size, self.base = 0, len(buf), base

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise Corrupt(f"field of {n} bytes at byte {self.base + self.pos} runs past the end "
                           "of its enclosing message (truncated or corrupt)")

    def read(self, n: int) -> bytes:
        self._need(n)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def byte(self) -> int:
        self._need(1)
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def array(self, nbytes: int, dtype: np.dtype) -> np.ndarray:
        self._need(nbytes)
        arr = np.frombuffer(self.buf, dtype=dtype, count=nbytes // dtype.itemsize,
                            offset=self.pos).copy()
        self.pos += nbytes
        return arr

    def sub(self, n: int) -> "BytesSource":
        self._need(n)
        out = BytesSource(self.buf[self.pos:self.pos + n], base=self.base + self.pos)
        self.pos += n
        return out


# ------------------------------------------------------------------ wire primitives
def read_varint(src) -> int:
    result = shift = 0
    for _ in range(10):
        b = src.byte()
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
    raise Corrupt("malformed varint (more than 10 bytes)")


def read_tag(src) -> tuple[int, int]:
    key = read_varint(src)
    fnum, wtype = key >> 3, key & 7
    if fnum == 0 or wtype in (6, 7):
        raise Corrupt(f"invalid field key {key} at byte {position(src) - 1} (not protobuf data)")
    return fnum, wtype


def position(src) -> int:
    return getattr(src, "base", 0) + src.pos


def read_length(src, end: int) -> int:
    n = read_varint(src)
    if src.pos + n > end:
        raise Corrupt(f"length-delimited field of {n} bytes at byte {position(src)} runs past the "
                       f"end of its enclosing message (truncated or corrupt)")
    return n


def skip_field(src, wtype: int, fnum: int, end: int) -> None:
    """Skip one field value of the given wire type (groups included)."""
    if wtype == 0:
        read_varint(src)
    elif wtype == 1:
        src.skip(8)
    elif wtype == 5:
        src.skip(4)
    elif wtype == 2:
        src.skip(read_length(src, end))
    elif wtype == 3:
        # iterative, with protobuf's own nesting limit (100): 1,000 bytes of 0x0b are 1,000
        # nested group starts and must not exhaust Python's recursion limit
        open_groups = [fnum]
        while open_groups:
            if src.pos >= end:
                raise Corrupt(f"unterminated group (field {open_groups[-1]})")
            inner, iw = read_tag(src)
            if iw == 4:
                if inner != open_groups[-1]:
                    raise Corrupt(f"mismatched end of group {inner} (expected {open_groups[-1]})")
                open_groups.pop()
            elif iw == 3:
                open_groups.append(inner)
                if len(open_groups) > _MAX_GROUP_DEPTH:
                    raise Corrupt(f"groups nested more than {_MAX_GROUP_DEPTH} deep at byte "
                                   f"{position(src)} (not a caffemodel)")
            else:
                skip_field(src, iw, inner, end)
    else:  # 4: end group without start
        raise Corrupt(f"unexpected end-group marker for field {fnum} at byte {position(src)}")
    if src.pos > end:
        raise Corrupt(f"field {fnum} runs past the end of its enclosing message")


def unpacked_run(src, end: int, tag_byte: int, width: int, dtype: np.dtype) -> np.ndarray:
    """Decode a run of consecutive non-packed fixed-width values (``tag value tag value ...``).

    Called right after the first value's one-byte tag was consumed; vectorised so that a
    non-packed file with millions of values still decodes quickly.  The run stops at the first
    record boundary that does not carry ``tag_byte``; the position is left there.
    """
    start = src.pos
    avail = end - start
    if avail < width:
        raise Corrupt(f"value of {width} bytes at byte {position(src)} runs past its message")
    if isinstance(src, FileSource):
        raw = np.frombuffer(src.read(avail), dtype=np.uint8)
    else:
        src._need(avail)
        raw = np.frombuffer(src.buf, dtype=np.uint8, count=avail, offset=start)
    rec = 1 + width
    nfull = (avail + 1) // rec            # records that fit (the first one's tag is consumed)
    tags = raw[rec - 1::rec][: nfull - 1]  # tag bytes of records 1 .. nfull-1
    bad = np.flatnonzero(tags != tag_byte)
    nrec = 1 + (int(bad[0]) if bad.size else tags.size)
    used = nrec * rec - 1
    rest = raw[width:used].reshape(-1, rec)[:, 1:].reshape(-1)
    values = np.concatenate([raw[:width], rest]).view(dtype).copy()
    if isinstance(src, FileSource):
        src.fh.seek(start + used)
    src.pos = start + used
    return values


def signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def signed32(v: int) -> int:
    # protobuf int32 fields: the varint is truncated to its low 32 bits, two's complement
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v



# ------------------------------------------------------------------ encoding
def encode_varint(n: int) -> bytes:
    """Protobuf's base-128 varint (negative ints as their 64-bit two's complement)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_key(fnum: int, wtype: int) -> bytes:
    """The key of field ``fnum`` with wire type ``wtype`` (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32)."""
    return encode_varint((fnum << 3) | wtype)


def field_header(fnum: int, payload_len: int) -> bytes:
    """Tag and length of a length-delimited field (for writers that stream big messages)."""
    return field_key(fnum, 2) + encode_varint(payload_len)


# ------------------------------------------------------------------ whole messages
def parse_message(path, data: bytes, message, what: str):
    """``message.ParseFromString(data)``, with an error naming ``path`` (and what the bytes look
    like, when obviously not protobuf) for empty, truncated or corrupt data."""
    if not data:
        raise CaffeFormatError(path, f"empty file, expected a {what}")
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        what_it_is = describe_magic(data[:64])
        hint = f" (this looks like {what_it_is})" if what_it_is else ""
        why = " ".join(str(exc).split())
        raise CaffeFormatError(path, f"not a valid {what}: truncated or corrupt protobuf ({why}){hint}") from None
    return message
