"""``run.py --fetch``: download exactly the trained models, LMDBs and starting points a run needs from
the upstream Nextcloud shares (or a mirror of them) into a data folder, and keep those files honest.

Owns: which files of the shares a run needs (found by listing the shares over WebDAV, never by a
fixed list), the data folder and its layout, its ``manifest.json`` (size and sha256 of every
fetched file, written at the first download and checked at every later use), and the sha256 of the
weight files that a table run names in results.json.  The HTTP transfer is
:func:`reproduce.assets._download` (``.part`` file resumed with ``Range``); listing is
:mod:`reproduce.webdav`.

Shares (upstream README): trained models ``TQnGNJmQZLWkQ7X``, LMDBs ``n6BLLnGPzinbe55``, starting
points ``rakPNNWAQbeGCPx`` on the host of :data:`reproduce.sources.LINKS`; Nextcloud serves a public
share over WebDAV at ``https://HOST/public.php/webdav/`` with the token as user name and an empty
password.  ``--remote URL`` (or ``$AGEGENDER_REMOTE``) replaces that by ``URL/<token>/`` without
authentication (a lab mirror).  The only fixed names are the documented ones:
``<folder>/models_test_is_K/caffenet_train_iter_N.caffemodel`` (the ``--weights-name`` pattern) and
``lmdb{,_unaligned,_mixed}/Test_fold_is_K/<target>_<split>_lmdb``; where these folders sit in a share
(top level, or below wrapper folders) is found by listing.

Data folder (``--data-dir``, ``$AGEGENDER_DATA_DIR``, else ``$XDG_CACHE_HOME/caffe-agegender``, else
``~/.cache/caffe-agegender``), laid out as ``--weights``, ``--lmdb`` and ``--init`` read it::

    models/<folder>/models_test_is_K/caffenet_train_iter_N.caffemodel   (-> --weights DATA/models)
    models/<folder>/deploy.prototxt                                    (if the share has one)
    lmdb/lmdb{,_unaligned,_mixed}/Test_fold_is_K/<t>_<split>_lmdb/data.mdb (-> --lmdb DATA/lmdb)
    init/<starting point>.caffemodel                                   (-> --init DATA/init)
    manifest.json
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from . import grid, sources
from .assets import VARIANT_SUFFIX, Asset, AssetError, _download, sha256_file
from .webdav import WebDAV, WebDAVError
from converters.errors import InputError

PROG = "run.py"
ENV_REMOTE = "AGEGENDER_REMOTE"
ENV_DATA = "AGEGENDER_DATA_DIR"
SHARE_TOKENS = {kind: sources.LINKS[kind].rstrip("/").rsplit("/", 1)[-1] for kind in ("weights", "lmdb", "init")}
DEFAULT_HOST = urllib.parse.urlparse(sources.LINKS["weights"]).netloc
# Nextcloud's WebDAV endpoints of a public share, tried in this order: the classic one (share token as
# user name, empty password) and the token-in-path one of newer servers (no authentication)
NEXTCLOUD_ENDPOINTS = (("https://{host}/public.php/webdav/", True),
                       ("https://{host}/public.php/dav/files/{token}/", False))
LOCAL_DIR = {"weights": "models", "lmdb": "lmdb", "init": "init"}
WHAT = {"weights": "trained weights", "lmdb": "LMDB", "init": "starting point"}
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "caffe-agegender data folder"
MAX_DEPTH = 3  # wrapper folders above the documented ones that the search looks through
# folders that never hold a wanted folder: do not list below them
_LEAF_DIR = re.compile(r"(models_test_is_\d+|Test_fold_is_\d+|.*_lmdb)\Z")


class FetchError(InputError):
    """A run's inputs cannot be fetched (message says which and where); exit code 2."""


class ShareMissing(FetchError):
    """The share itself is not on the server (HTTP 404 for its root folder)."""


class IntegrityError(sources.SourceError):
    """A file of the data folder no longer matches the size/sha256 recorded when it was fetched."""


# ---------------------------------------------------------------------------- options
def add_fetch_arguments(parser) -> None:
    """--fetch/--dry-run/--remote/--data-dir of the modes whose inputs can be downloaded (table, train,
    predict, explain; :func:`prepare` reads ``args.mode`` to know what the run needs)."""
    g = parser.add_argument_group("fetch: download the inputs a run needs (reproduce/fetch.py)")
    g.add_argument("--fetch", action="store_true",
                   help="download the trained weights, LMDBs and starting points the selected cells and folds "
                        "need (those not given with --weights/--lmdb/--adience/--init) from the upstream shares, "
                        "then run")
    g.add_argument("--dry-run", action="store_true",
                   help="with --fetch: list the files and the total size, download nothing")
    g.add_argument("--remote", metavar="URL",
                   help=f"mirror of the shares, each at URL/<share token>/ over WebDAV (also ${ENV_REMOTE}; "
                        f"default: the Nextcloud host {DEFAULT_HOST})")
    g.add_argument("--data-dir", metavar="DIR",
                   help=f"where fetched files go (also ${ENV_DATA}; default {default_data_dir()})")


def default_data_dir() -> Path:
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "caffe-agegender"


def share_candidates(kind: str, remote: str | None = None, timeout: float = 60.0) -> list[WebDAV]:
    """The WebDAV roots that may serve share ``kind``: ``remote/<token>/`` for a mirror, else the
    Nextcloud endpoints of the upstream host."""
    token = SHARE_TOKENS[kind]
    remote = remote if remote is not None else (os.environ.get(ENV_REMOTE) or None)
    if remote:
        return [WebDAV(remote.rstrip("/") + "/" + urllib.parse.quote(token) + "/", timeout=timeout)]
    return [WebDAV(url.format(host=DEFAULT_HOST, token=urllib.parse.quote(token)), user=token if auth else None,
                   timeout=timeout) for url, auth in NEXTCLOUD_ENDPOINTS]


def share(kind: str, remote: str | None = None, timeout: float = 60.0) -> WebDAV:
    return share_candidates(kind, remote, timeout)[0]


# ---------------------------------------------------------------------------- manifest and checksums
_SHA_MEMO: dict = {}


def file_sha256(path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(p)
    return _SHA_MEMO[key]


class Manifest:
    """``<data>/manifest.json``: relative path -> size, sha256, source URL, ETag, time of download."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self.files: dict = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.files = dict(data["files"])
            except (ValueError, KeyError, TypeError) as exc:
                raise IntegrityError(f"{self.path}: not a readable data-folder manifest ({exc}); move it away to "
                                     f"start a new one (the files it lists are then checked against the share "
                                     f"sizes only)") from None

    def save(self) -> None:
        from converters.formats import atomic_write_bytes
        data = {"format": MANIFEST_FORMAT, "version": 1, "files": dict(sorted(self.files.items()))}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))

    def record(self, rel: str, path: Path, source: str, etag: str | None) -> None:
        self.files[rel] = {"size": path.stat().st_size, "sha256": file_sha256(path), "source": source,
                           "etag": etag, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def problem(self, rel: str, path: Path) -> str | None:
        """Why ``path`` (listed as ``rel``) must not be used, or None when it matches its record."""
        rec = self.files.get(rel)
        if rec is None:
            return None
        size = path.stat().st_size
        if size != rec["size"]:
            what = "truncated" if size < rec["size"] else "grown"
            return (f"{path}: {what} since it was fetched ({size} bytes, the manifest {self.path} recorded "
                    f"{rec['size']})")
        got = file_sha256(path)
        if got != rec["sha256"]:
            return (f"{path}: changed since it was fetched (sha256 {got}, the manifest {self.path} recorded "
                    f"{rec['sha256']})")
        return None


def find_manifest(path) -> tuple[Manifest, str] | None:
    """The data-folder manifest that lists ``path`` and the path's name in it (None if none does)."""
    p = Path(path).resolve()
    for parent in list(p.parents)[:6]:
        m = parent / MANIFEST_NAME
        if m.is_file():
            try:
                if json.loads(m.read_text(encoding="utf-8")).get("format") != MANIFEST_FORMAT:
                    continue
            except (ValueError, AttributeError):
                continue
            manifest = Manifest(parent)
            rel = p.relative_to(parent).as_posix()
            if rel in manifest.files:
                return manifest, rel
    return None


def check_recorded(path) -> None:
    """Raise :class:`IntegrityError` when a data-folder manifest lists ``path`` and the file no longer
    matches the record (hashes only files that a manifest lists)."""
    found = find_manifest(path)
    if found is not None:
        manifest, rel = found
        why = manifest.problem(rel, Path(path).resolve())
        if why:
            raise IntegrityError(f"{why}; delete it and run with --fetch to download it again")


def verified_sha256(path) -> str:
    """sha256 of an input file; raises :class:`IntegrityError` when a data-folder manifest lists the file
    with another size or sha256 (the file changed after it was fetched)."""
    check_recorded(path)
    return file_sha256(path)


# ---------------------------------------------------------------------------- what a run needs
@dataclass
class Needs:
    weights: dict       # folder -> (folds, iteration or "readme")
    lmdbs: list         # (variant, fold, target, split)
    inits: list         # starting-point file names


def _folds(text, option: str = "--folds", allow_all: bool = False) -> list[int]:
    from .options import UsageError, parse_folds
    try:
        return parse_folds(text, option, allow_all)
    except UsageError as exc:
        raise FetchError(str(exc)) from None


def needs_of(args) -> Needs:
    """The inputs the run described by ``args`` reads that it was not given."""
    mode = args.mode        # table, train, predict or explain (reproduce.modes)
    weights, lmdbs, inits = {}, [], []
    if args.table is None:
        what = "model" if mode == "predict" else "cells"
        raise FetchError(f"--fetch needs --table (and --row/--col) to know which {what} to download")
    try:
        if mode == "predict":
            from .classify import PredictError, select_cell
            try:
                cells = [select_cell(args.table, args.row, args.col)]
            except PredictError as exc:
                raise FetchError(str(exc)) from None
            folds = _folds(args.fold, "--fold", allow_all=True)
        else:
            cells = [c for c in grid.select(args.table, args.row, args.col) if not c.empty]
            folds = _folds(args.folds)
    except grid.GridError as exc:
        raise FetchError(str(exc)) from None
    if mode != "train" and not args.weights:
        for c in cells:
            it = "readme" if mode == "table" and args.source == "readme" else (args.iter or c.final_iter)
            weights[c.folder] = (folds, it)
    if mode in ("table", "train") and not args.lmdb and not args.adience:
        if mode == "train":
            from .upstream_rewrite import training_variant
            for c in cells:
                v = training_variant(c, args.q_g1)
                lmdbs += [(v, k, c.target, split) for k in folds for split in ("train", "val")]
        if mode == "table" or not args.no_eval:
            lmdbs += [(c.test, k, c.target, "test") for c in cells for k in folds]
    if mode == "train" and not args.init:
        from .upstream_rewrite import TrainError, init_file
        try:
            inits = sorted({n for n in (init_file(c) for c in cells) if n})
        except TrainError as exc:
            raise FetchError(str(exc)) from None
    return Needs(weights, list(dict.fromkeys(lmdbs)), inits)


# ---------------------------------------------------------------------------- finding files in a share
@dataclass
class Wanted:
    kind: str
    local: str                # path below the data folder
    remote: str               # path below the share root
    size: int | None
    etag: str | None
    url: str


class ShareIndex:
    """Cached listings of one share and a breadth-first search for named folders or files."""

    def __init__(self, kind: str, dav: WebDAV):
        self.kind, self.dav = kind, dav
        self._lists: dict = {}

    def where(self, path: str = "") -> str:
        url = self.dav.url(path) + ("/" if path else "")
        return url + (f" (Nextcloud share {self.dav.user})" if self.dav.user else "")

    def listdir(self, path: str) -> dict | None:
        if path not in self._lists:
            try:
                self._lists[path] = {e.name: e for e in self.dav.listdir(path)}
            except FileNotFoundError:
                self._lists[path] = None
        return self._lists[path]

    def locate(self, names, want_dir: bool, skip=()) -> dict:
        """name -> path of the shallowest entry with that name (folders if ``want_dir``), looking through
        up to :data:`MAX_DEPTH` levels of wrapper folders."""
        names, found = set(names), {}
        queue = [("", 0)]
        while queue and len(found) < len(names):
            path, depth = queue.pop(0)
            entries = self.listdir(path)
            if entries is None:
                if path == "":
                    raise ShareMissing(f"no such share: {self.where()} answered 404")
                continue
            for name, e in entries.items():
                if name in names and e.is_dir == want_dir and name not in found:
                    found[name] = e.path
            for name, e in entries.items():
                if (e.is_dir and depth < MAX_DEPTH and name not in names and name not in skip
                        and not _LEAF_DIR.match(name)):
                    queue.append((e.path, depth + 1))
        return found


def _snapshot_regex(name: str, fold: int, folder: str) -> re.Pattern:
    pattern = re.escape(name.format(iter="\0", fold=fold, folder=folder)).replace("\\\0", "\0")
    return re.compile(pattern.replace("\0", r"(\d+)") + r"\Z")


def find_weights(index: ShareIndex, needs: dict, name: str) -> tuple[list, list]:
    """(wanted files, missing lines) for ``needs``: folder -> (folds, iteration | 'readme')."""
    wanted, missing = [], []
    all_folders = {c.folder for c in grid.all_cells() if c.folder}
    located = index.locate(needs, want_dir=True, skip=all_folders)
    for folder, (folds, it) in needs.items():
        if folder not in located:
            missing.append(f"{folder}/ (trained weights of {folder}): no folder of that name in {index.where()} "
                           f"or the {MAX_DEPTH} folder levels below it")
            continue
        base = located[folder]
        top = index.listdir(base) or {}
        if "deploy.prototxt" in top and not top["deploy.prototxt"].is_dir:
            e = top["deploy.prototxt"]
            wanted.append(Wanted("weights", f"{folder}/deploy.prototxt", e.path, e.size, e.etag, index.dav.url(e.path)))
        listings = {k: index.listdir(f"{base}/models_test_is_{k}") or {} for k in folds}
        if it == "readme":
            cell = grid.cells_of_folder(folder)[0]
            limit = min(cell.final_iter, grid.readme_max_iter())
            per_fold = []
            for k in folds:
                rx = _snapshot_regex(name, k, folder)
                per_fold.append({int(m.group(1)) for m in (rx.match(n) for n in listings[k]) if m})
            its = sorted(i for i in set.intersection(*per_fold) if i <= limit and i % cell.snapshot_step == 0)
            if not its:
                missing.append(f"{folder}: no snapshot up to {limit} iterations present for every fold "
                               f"{','.join(map(str, folds))} (--source readme) in {index.where(base)}")
                continue
        else:
            its = [it]
        for i in its:
            for k in folds:
                fname = name.format(iter=i, fold=k, folder=folder)
                rel = f"{folder}/models_test_is_{k}/{fname}"
                e = listings[k].get(fname)
                if e is None or e.is_dir:
                    where = index.where(f"{base}/models_test_is_{k}")
                    missing.append(f"{rel} (trained weights, fold {k}): not in {where}")
                else:
                    wanted.append(Wanted("weights", rel, e.path, e.size, e.etag, index.dav.url(e.path)))
    return wanted, missing


def find_lmdbs(index: ShareIndex, needs: list) -> tuple[list, list]:
    """(wanted files, missing lines) for ``needs``: (variant, fold, target, split)."""
    wanted, missing = [], []
    roots = index.locate({f"lmdb{VARIANT_SUFFIX[v]}" for v, *_ in needs}, want_dir=True)
    for v, k, t, split in needs:
        top = f"lmdb{VARIANT_SUFFIX[v]}"
        rel = f"{top}/Test_fold_is_{k}/{t}_{split}_lmdb"
        if top not in roots:
            missing.append(f"{rel} ({split} LMDB): no folder {top}/ in {index.where()} or the {MAX_DEPTH} folder "
                           f"levels below it")
            continue
        path = f"{roots[top]}/Test_fold_is_{k}/{t}_{split}_lmdb"
        files = index.listdir(path) or {}
        if "data.mdb" not in files or files["data.mdb"].is_dir:
            missing.append(f"{rel}/data.mdb ({split} LMDB, fold {k}): not in {index.where(path)}")
            continue
        # only data.mdb: lock.mdb is LMDB's run-time lock table, rewritten by every locking reader (and created
        # when missing), so it is neither needed nor a file whose checksum could stay fixed
        e = files["data.mdb"]
        wanted.append(Wanted("lmdb", f"{rel}/data.mdb", e.path, e.size, e.etag, index.dav.url(e.path)))
    return wanted, missing


def find_inits(index: ShareIndex, names: list) -> tuple[list, list]:
    located = index.locate(names, want_dir=False)
    wanted, missing = [], []
    for n in names:
        if n not in located:
            missing.append(f"{n} (starting point): not in {index.where()} or the {MAX_DEPTH} folder levels below it")
            continue
        e = index.listdir(located[n].rpartition("/")[0])[n]
        wanted.append(Wanted("init", n, e.path, e.size, e.etag, index.dav.url(e.path)))
    return wanted, missing


# ---------------------------------------------------------------------------- fetching
def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class Fetcher:
    def __init__(self, data_dir, remote: str | None = None, progress: bool | None = None,
                 timeout: float = 60.0, out=None):
        self.data = Path(data_dir) if data_dir else default_data_dir()
        self.remote = remote
        self.progress = progress
        self.timeout = timeout
        self.out = out or sys.stdout
        self.indexes = {}
        self.manifest = Manifest(self.data)

    def index(self, kind: str) -> ShareIndex:
        """The first endpoint that lists the share's root folder (else the first one, which then reports)."""
        if kind not in self.indexes:
            candidates = [ShareIndex(kind, dav) for dav in share_candidates(kind, self.remote, self.timeout)]
            chosen = None
            for ix in candidates:
                try:
                    if ix.listdir("") is not None:
                        chosen = ix
                        break
                except WebDAVError:
                    continue
            self.indexes[kind] = chosen or candidates[0]
        return self.indexes[kind]

    def dest(self, w: Wanted) -> Path:
        return self.data / LOCAL_DIR[w.kind] / w.local

    def resolve(self, needs: Needs, weights_name: str) -> list[Wanted]:
        wanted, missing = [], []
        jobs = [("weights", needs.weights, lambda ix: find_weights(ix, needs.weights, weights_name)),
                ("lmdb", needs.lmdbs, lambda ix: find_lmdbs(ix, needs.lmdbs)),
                ("init", needs.inits, lambda ix: find_inits(ix, needs.inits))]
        for kind, need, find in jobs:
            if not need:
                continue
            try:
                w, m = find(self.index(kind))
            except ShareMissing as exc:
                names = (sorted(need) if kind != "lmdb" else
                         sorted({f"lmdb{VARIANT_SUFFIX[v]}/" for v, *_ in need}))
                w, m = [], [f"{WHAT[kind]} ({', '.join(names)}): {exc}"]
            except WebDAVError as exc:
                raise FetchError(f"cannot list the {WHAT[kind]} share: {exc}") from None
            wanted += w
            missing += m
        if missing:
            head = "\n  * ".join(missing[:12])
            more = f"\n  ... and {len(missing) - 12} more" if len(missing) > 12 else ""
            raise FetchError(f"{len(missing)} file(s) the run needs are not in the share(s):\n  * {head}{more}\n"
                             f"(another server or mirror: --remote URL; files you have: --weights/--lmdb/--init DIR)")
        return wanted

    def check_present(self, wanted: list[Wanted]) -> tuple[list, list]:
        """(present and verified, to download); raises IntegrityError for a changed or odd local file."""
        present, todo, problems = [], [], []
        adopted = False
        for w in wanted:
            dest = self.dest(w)
            rel = dest.relative_to(self.data).as_posix()
            if not dest.is_file():
                todo.append(w)
                continue
            if rel in self.manifest.files:
                why = self.manifest.problem(rel, dest)
                if why:
                    problems.append(why)
                    continue
            elif w.size is not None and dest.stat().st_size != w.size:
                problems.append(f"{dest}: {dest.stat().st_size} bytes, the share's copy has {w.size} (not in the "
                                f"manifest {self.manifest.path}: copied there by hand?)")
                continue
            else:  # put there by hand with the share's size: take it, and guard it from now on
                self._check_file(dest, dest)
                self.manifest.record(rel, dest, "present before --fetch", w.etag)
                adopted = True
            present.append(w)
        if adopted:
            self.manifest.save()
        if problems:
            raise IntegrityError("\n  ".join(problems) + "\n  (a file must not change after it was fetched: delete "
                                 "it and run again to download it anew)")
        return present, todo

    def plan_text(self, present, todo) -> str:
        total = sum(w.size or 0 for w in todo)
        lines = [f"fetch: {len(todo)} file(s) to download, {_human(total)}, into {self.data}"
                 + (f" ({len(present)} already there and verified)" if present else "")]
        for kind in dict.fromkeys(w.kind for w in todo):
            lines.append(f"  from {self.indexes[kind].where()} ({WHAT[kind]}):")
            lines += [f"  {_human(w.size):>10}  {LOCAL_DIR[w.kind]}/{w.local}" for w in todo if w.kind == kind]
        return "\n".join(lines)

    def download(self, todo: list[Wanted]) -> None:
        if not todo:
            return
        from tqdm import tqdm
        bar = tqdm(total=sum(w.size or 0 for w in todo), unit="B", unit_scale=True, unit_divisor=1024,
                   file=sys.stderr, desc=f"fetch ({len(todo)} files)",
                   disable=None if self.progress is None else not self.progress)
        try:
            for w in todo:
                self._download_one(w, bar)
        finally:
            bar.close()

    def _download_one(self, w: Wanted, bar) -> None:
        dest = self.dest(w)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        stamp = dest.with_name(dest.name + ".part.json")
        origin = {"url": w.url, "size": w.size, "etag": w.etag}
        # a .part is resumed only when it was started from the same remote file (same URL, size, ETag)
        try:
            same = json.loads(stamp.read_text(encoding="utf-8")) == origin
        except (OSError, ValueError):
            same = False
        if part.exists() and not same:
            part.unlink()
        stamp.write_text(json.dumps(origin), encoding="utf-8")
        index = self.indexes[w.kind]
        if w.size is None:  # resuming and the completeness check both need the size
            raise FetchError(f"{w.url}: the share's listing gives no size for this file; cannot download it safely")
        try:
            _download(w.url, part, Asset(f"{LOCAL_DIR[w.kind]}/{w.local}", w.size, ""), bar, self.timeout,
                      headers=index.dav.headers(), hint="check the connection or use --remote URL")
        except AssetError as exc:
            raise FetchError(str(exc)) from None
        got = part.stat().st_size if part.exists() else 0
        if got != w.size:
            raise FetchError(f"{w.url}: got {got} bytes, the share lists {w.size}; run again to resume from {part}")
        self._check_file(part, dest)
        os.replace(part, dest)
        stamp.unlink(missing_ok=True)
        self.manifest.record(dest.relative_to(self.data).as_posix(), dest, w.url, w.etag)
        self.manifest.save()

    @staticmethod
    def _check_file(path: Path, dest: Path) -> None:
        """A caffemodel must parse before a run starts (the share publishes no checksums)."""
        if dest.suffix != ".caffemodel":
            return
        from converters.formats import CaffeFormatError, read_weight_layers
        try:
            read_weight_layers(path)
        except CaffeFormatError as exc:
            if path != dest:
                path.unlink(missing_ok=True)
            raise FetchError(f"{dest}: the downloaded file is not a valid caffemodel ({exc})") from None


def prepare(args) -> int | None:
    """``--fetch`` / ``--dry-run``: find, list and download the inputs of the run in ``args``, then point
    ``args.weights`` / ``args.lmdb`` / ``args.init`` at the data folder.  Returns None to go on with
    the run, 0 after a dry run, 2 after an error (printed)."""
    if not (args.fetch or args.dry_run):
        return None
    try:
        needs = needs_of(args)
        fetcher = Fetcher(args.data_dir, args.remote, progress=False if args.no_progress else None)
        wanted = fetcher.resolve(needs, args.weights_name)
        present, todo = fetcher.check_present(wanted)
        print(fetcher.plan_text(present, todo), flush=True)
        if args.dry_run:
            for w in present:
                print(f"  {_human(w.size):>10}  {LOCAL_DIR[w.kind]}/{w.local}  (already there)")
            print(f"fetch: dry run, {len(wanted)} file(s), {_human(sum(w.size or 0 for w in wanted))} in all; "
                  f"nothing downloaded")
            return 0
        fetcher.download(todo)
    except (FetchError, IntegrityError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: download interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if needs.weights:
        args.weights = str(fetcher.data / LOCAL_DIR["weights"])
    if needs.lmdbs:
        args.lmdb = str(fetcher.data / LOCAL_DIR["lmdb"])
    if needs.inits:
        args.init = str(fetcher.data / LOCAL_DIR["init"])
    if todo:
        print(f"fetch: {len(todo)} file(s) downloaded and recorded in {fetcher.manifest.path}", flush=True)
    return None
