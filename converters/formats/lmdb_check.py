"""Structural check of an LMDB ``data.mdb`` before python-lmdb maps it.

What it owns: making sure no page or value that a read-only cursor will touch lies past the end of
the file.  LMDB reads through a memory map, so a page number or value size corrupted by a bit flip
(or a copy cut short) makes the cursor read beyond the file, and the kernel kills the process with
SIGBUS: no exception, no message.  Here the B-tree of the main database is walked with ordinary
file reads (a short read is just short) and every reference is bounds-checked.

Layout read (LMDB 0.9 on a 64-bit build, ``mdb.c``): a page starts with a 16-byte header
(``pgno`` u64, pad u16, ``flags`` u16, ``lower``/``upper`` u16 or ``pages`` u32 for overflow
pages) followed by ``lower - 16`` bytes of u16 node offsets.  Pages 0 and 1 are meta pages; the one
with the larger ``txnid`` is current; its ``dbs[0].pad`` is the page size and ``dbs[1].root`` the
main tree's root.  A node is ``lo, hi, flags, ksize`` (u16 each), the key, then the data: in a
branch node ``lo | hi << 16 | flags << 32`` is the child page; in a leaf node ``lo | hi << 16``
is the data size and flag ``F_BIGDATA`` (1) means the data is an overflow page number.
"""
from __future__ import annotations

import os
import struct
from converters.errors import InputError

P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA = 0x01
HEADER = 16
NODE = 8
MAGIC = 0xBEEFC0DE
P_INVALID = (1 << 64) - 1


class LmdbStructureError(ValueError, InputError):
    """The file is not an LMDB this reader can map safely (message: what is wrong, where)."""


def _meta(fh, offset: int):
    raw = os.pread(fh, 152, offset)
    if len(raw) < 152:
        return None
    flags = struct.unpack_from("<H", raw, 10)[0]
    magic, version = struct.unpack_from("<II", raw, 16)
    if not flags & P_META or magic != MAGIC:
        return None
    psize = struct.unpack_from("<I", raw, 40)[0]
    root = struct.unpack_from("<Q", raw, 128)[0]
    last_pg, txnid = struct.unpack_from("<QQ", raw, 136)
    return {"psize": psize, "root": root, "last_pg": last_pg, "txnid": txnid, "version": version}


def check_lmdb_file(path) -> None:
    """Raise :class:`LmdbStructureError` when a cursor over the main database of ``path``
    (a ``data.mdb``) would read past the end of the file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        first = _meta(fd, 0)
        if first is None:
            raise LmdbStructureError("no LMDB meta page at the start of data.mdb")
        psize = first["psize"]
        if psize < 512 or psize & (psize - 1) or psize > 1 << 20:
            raise LmdbStructureError(f"implausible page size {psize}")
        second = _meta(fd, psize)
        metas = [m for m in (first, second) if m is not None and m["psize"] == psize]
        meta = max(metas, key=lambda m: m["txnid"])
        npages = size // psize
        if meta["last_pg"] >= npages:
            raise LmdbStructureError(f"truncated: data.mdb holds {size:,} bytes but its "
                                     f"{meta['last_pg'] + 1} pages need {(meta['last_pg'] + 1) * psize:,}")
        if meta["root"] == P_INVALID:
            return                                    # empty database
        _walk(fd, meta["root"], psize, npages)
    finally:
        os.close(fd)


def _walk(fd, root: int, psize: int, npages: int) -> None:
    stack, seen = [root], set()
    while stack:
        pgno = stack.pop()
        if pgno >= npages or pgno < 2:
            raise LmdbStructureError(f"page {pgno} referenced, but the file has pages 2..{npages - 1}")
        if pgno in seen:
            raise LmdbStructureError(f"page {pgno} referenced twice (a cycle in the tree)")
        seen.add(pgno)
        page = os.pread(fd, psize, pgno * psize)
        flags, lower, upper = struct.unpack_from("<HHH", page, 10)
        if not flags & (P_BRANCH | P_LEAF) or flags & (P_OVERFLOW | P_META | P_LEAF2):
            raise LmdbStructureError(f"page {pgno}: flags {flags:#x}, expected a branch or leaf page")
        if not HEADER <= lower <= upper <= psize or (lower - HEADER) % 2:
            raise LmdbStructureError(f"page {pgno}: corrupt header (lower {lower}, upper {upper})")
        count = (lower - HEADER) // 2
        offsets = struct.unpack_from(f"<{count}H", page, HEADER)
        for i, off in enumerate(offsets):
            if not upper <= off <= psize - NODE:
                raise LmdbStructureError(f"page {pgno}: node {i} at offset {off} lies outside the page")
            lo, hi, nflags, ksize = struct.unpack_from("<HHHH", page, off)
            end_key = off + NODE + ksize
            if end_key > psize:
                raise LmdbStructureError(f"page {pgno}: node {i} key of {ksize} bytes runs past the page")
            if flags & P_BRANCH:
                stack.append(lo | hi << 16 | nflags << 32)
                continue
            dsize = lo | hi << 16
            if nflags & F_BIGDATA:
                if end_key + 8 > psize:
                    raise LmdbStructureError(f"page {pgno}: node {i} overflow reference runs past the page")
                ovpg = struct.unpack_from("<Q", page, end_key)[0]
                if not 2 <= ovpg < npages:
                    raise LmdbStructureError(f"page {pgno}: node {i} value on page {ovpg}, past the "
                                             f"file's {npages} pages")
                head = os.pread(fd, HEADER, ovpg * psize)
                oflags = struct.unpack_from("<H", head, 10)[0]
                pages = struct.unpack_from("<I", head, 12)[0]
                if not oflags & P_OVERFLOW or pages < 1:
                    raise LmdbStructureError(f"page {ovpg}: expected an overflow page")
                if ovpg + pages > npages or dsize > pages * psize - HEADER:
                    raise LmdbStructureError(f"page {pgno}: node {i} value of {dsize:,} bytes on pages "
                                             f"{ovpg}..{ovpg + pages - 1} runs past the end of the file")
            elif end_key + dsize > psize:
                raise LmdbStructureError(f"page {pgno}: node {i} value of {dsize:,} bytes runs past the page")
