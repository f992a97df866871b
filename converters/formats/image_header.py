"""Image dimensions from an encoded file's header, read before anything is decoded.

What it owns: refusing images too large to decode (a 110 KB PNG can declare 30000 x 30000
pixels and make OpenCV allocate 2.7 GB) with a message saying how big they are.  PNG (IHDR),
JPEG (the SOFn segment), BMP and GIF headers are read here; other formats are left to OpenCV's
own limit (``CV_IO_MAX_IMAGE_PIXELS``, 2^30 pixels).
"""
from __future__ import annotations

import os
import struct

# A photo of 100 megapixels decodes to 300 MB of BGR bytes; set CONVERTERS_MAX_IMAGE_PIXELS to
# allow more.
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels() -> int:
    try:
        return int(os.environ.get("CONVERTERS_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def header_size(data) -> tuple[int, int] | None:
    """``(width, height)`` declared by a PNG/JPEG/BMP/GIF header, or None when not known."""
    b = bytes(data[:65536]) if not isinstance(data, bytes) else data
    if b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) >= 24 and b[12:16] == b"IHDR":
        return struct.unpack(">II", b[16:24])
    if b.startswith(b"GIF8") and len(b) >= 10:
        return struct.unpack("<HH", b[6:10])
    if b.startswith(b"BM") and len(b) >= 26:
        w, h = struct.unpack("<ii", b[18:26])
        return abs(w), abs(h)
    if b.startswith(b"\xff\xd8"):
        return _jpeg_size(b)
    return None


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    # markers: FF xx [len hi lo] ...; SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry
    # precision (1 byte), height (2), width (2)
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:                 # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (b[i + 2] << 8) | b[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return w, h
        if marker == 0xDA or length < 2:   # start of scan before any SOF: give up
            return None
        i += 2 + length
    return None


def check_pixels(data, what: str) -> None:
    """Raise ValueError(``what``: ...) when the header declares more than :func:`max_pixels`."""
    size = header_size(data)
    if size is None:
        return
    w, h = size
    limit = max_pixels()
    if w * h > limit:
        raise ValueError(f"{what} declares {w} x {h} = {w * h:,} pixels, more than the limit "
                         f"of {limit:,} (set CONVERTERS_MAX_IMAGE_PIXELS to allow more)")
