"""Upstream data files of the paper's repository, fetched on demand and checked against a manifest.

Owns: the manifest ``reproduce/data/upstream_manifest.json`` (path, size, sha256 of every model
definition, fold list, mean image and synset file of
sebastian-lapuschkin/understanding-age-gender-deep-learning-models at the pinned commit), the
mapping of upstream folders to the local asset folders, and the download (resumable through HTTP
``Range`` on a ``.part`` file, atomic rename after the sha256 check).  Knows nothing of networks or
of the protocol.

Local layout (under the asset root = ``$REPRO_ASSETS_DIR``, else the repository root of a checkout,
else ``~/.cache/caffe-agegender-repro`` for an installed package)::

    prototxt/<folder>/...            <- model_definitions/<folder>/...
    prototxt/synsets/synset_*.txt    <- heatmap_drawing/synset_*.txt
    folds/...                        <- folds/...
    mean_images/...                  <- mean_images/...

The manifest is the packaged one unless ``$REPRO_ASSETS_MANIFEST`` names another file of the same
format (e.g. pins of a fork, or of a synthetic tree laid out like upstream).

Sources, in this order of preference: ``mirror=`` / ``--assets-mirror`` / ``$REPRO_ASSETS_MIRROR``
(a folder laid out like the upstream repository, a ``file://`` URL of one, or a base URL), else the
pinned raw.githubusercontent.com URL.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from converters.errors import InputError

MANIFEST_PATH = Path(__file__).resolve().parent / "data" / "upstream_manifest.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_ROOT = "REPRO_ASSETS_DIR"
ENV_MIRROR = "REPRO_ASSETS_MIRROR"
ENV_MANIFEST = "REPRO_ASSETS_MANIFEST"
CHUNK = 1 << 16
ATTEMPTS = 3

# data variant -> upstream folder suffixes (spec 4.4)
VARIANT_SUFFIX = {"i": "", "r": "_unaligned", "m": "_mixed"}
FOLD_LIST_DIR = {
    "i": "folds/train_val_txt_files_per_fold",
    "r": "folds/squared_unaligned_train_val_txt_files_per_fold",
    "m": "folds/mixed_train_val_txt_files_per_fold",
}


class AssetError(RuntimeError, InputError):
    """An upstream file cannot be obtained or does not match the manifest (message names the file)."""


@dataclass(frozen=True)
class Asset:
    path: str  # path in the upstream repository
    size: int
    sha256: str


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_root() -> Path:
    """``$REPRO_ASSETS_DIR``, else the repository root of a checkout, else ~/.cache (installed package)."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT])
    if (REPO_ROOT / "setup.py").is_file():
        return REPO_ROOT
    return Path.home() / ".cache" / "caffe-agegender-repro"


def default_mirror() -> str | None:
    return os.environ.get(ENV_MIRROR) or None


class Manifest:
    def __init__(self, data: dict, source: str = MANIFEST_PATH.name):
        self.source = source  # the file the pins came from, for messages
        self.repository = data["repository"]
        self.commit = data["commit"]
        self.url_template = data["url_template"]
        self.layout = dict(data["layout"])
        self.files = {f["path"]: Asset(f["path"], int(f["size"]), f["sha256"]) for f in data["files"]}

    @classmethod
    def load(cls, path=None) -> "Manifest":
        """``path``, else ``$REPRO_ASSETS_MANIFEST``, else the packaged manifest."""
        path = Path(path or os.environ.get(ENV_MANIFEST) or MANIFEST_PATH)
        try:
            with open(path, encoding="utf-8") as fh:
                return cls(json.load(fh), str(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AssetError(f"{path}: not a readable upstream manifest ({exc})") from None

    def __getitem__(self, path: str) -> Asset:
        try:
            return self.files[path]
        except KeyError:
            raise AssetError(f"{path}: not an upstream file listed in {self.source}") from None

    def local_relpath(self, path: str) -> str:
        for prefix, local in self.layout.items():
            if path.startswith(prefix):
                return local + path[len(prefix):]
        raise AssetError(f"{path}: no local folder for it in the manifest layout")


class AssetStore:
    """Upstream files under ``root``; :meth:`ensure` fetches what is missing or fails its checksum."""

    def __init__(self, root=None, mirror: str | None = None, progress: bool | None = None,
                 manifest: Manifest | None = None, timeout: float = 60.0):
        self.root = Path(root) if root is not None else default_root()
        self.mirror = mirror if mirror is not None else default_mirror()
        self.progress = progress
        self.manifest = manifest or Manifest.load()
        self.timeout = timeout
        self._verified: dict[Path, tuple[int, int]] = {}

    # ---------------------------------------------------------------- paths of named assets
    def local_path(self, path: str) -> Path:
        return self.root / self.manifest.local_relpath(path)

    def deploy(self, folder: str) -> Path:
        return self.ensure([f"model_definitions/{folder}/deploy.prototxt"])[0]

    def model_file(self, folder: str, name: str) -> Path:
        return self.ensure([f"model_definitions/{folder}/{name}"])[0]

    def mean(self, variant: str, fold: int) -> Path:
        return self.ensure([mean_asset(variant, fold)])[0]

    def fold_list(self, variant: str, fold: int, target: str, split: str = "test") -> Path:
        return self.ensure([f"{FOLD_LIST_DIR[variant]}/test_fold_is_{fold}/{target}_{split}.txt"])[0]

    def synset(self, target: str) -> Path:
        return self.ensure([f"heatmap_drawing/synset_{target}.txt"])[0]

    def fetch_all(self) -> list[Path]:
        return self.ensure(sorted(self.manifest.files))

    # ---------------------------------------------------------------- verification and fetching
    def is_valid(self, asset: Asset) -> bool:
        dest = self.local_path(asset.path)
        try:
            st = dest.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_size, st.st_mtime_ns)
        if self._verified.get(dest) == stamp:
            return True
        if st.st_size != asset.size or sha256_file(dest) != asset.sha256:
            return False
        self._verified[dest] = stamp
        return True

    def missing(self, paths: Iterable[str]) -> list[Asset]:
        return [a for a in (self.manifest[p] for p in paths) if not self.is_valid(a)]

    def ensure(self, paths: Iterable[str]) -> list[Path]:
        """Local paths of the upstream ``paths``; fetches and verifies the ones not yet valid."""
        paths = list(paths)
        todo = self.missing(paths)
        if todo:
            for asset in todo:
                dest = self.local_path(asset.path)
                if dest.exists():
                    print(f"assets: {dest} does not match the upstream sha256, fetching it again",
                          file=sys.stderr)
            bar = _progress_bar(sum(a.size for a in todo), len(todo), self.progress)
            try:
                for asset in todo:
                    self._fetch(asset, bar)
            finally:
                bar.close()
        return [self.local_path(p) for p in paths]

    def source_of(self, asset: Asset) -> str:
        mirror = self.mirror
        if not mirror:
            return self.manifest.url_template.format(path=asset.path)
        if mirror.startswith("file://"):
            return str(Path(urllib.request.url2pathname(urllib.parse.urlparse(mirror).path)) / asset.path)
        if "://" in mirror:
            return mirror.rstrip("/") + "/" + urllib.parse.quote(asset.path)
        return str(Path(mirror) / asset.path)

    def _fetch(self, asset: Asset, bar) -> None:
        dest = self.local_path(asset.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        src = self.source_of(asset)
        is_url = "://" in src
        for attempt in range(2):  # second round only after a resumed download failed its checksum
            resumed = part.exists() and 0 < part.stat().st_size
            if is_url:
                _download(src, part, asset, bar, self.timeout)
            else:
                _copy(src, part, asset, bar)
            got = sha256_file(part) if part.stat().st_size == asset.size else None
            if got == asset.sha256:
                os.replace(part, dest)
                self._verified.pop(dest, None)
                return
            size = part.stat().st_size
            part.unlink()
            if resumed and attempt == 0:
                continue  # a stale .part: start again from zero once
            what = f"sha256 {got}" if got else f"{size} bytes"
            raise AssetError(
                f"{asset.path}: checksum mismatch for the copy from {src}: expected {asset.size} bytes with "
                f"sha256 {asset.sha256}, got {what}; the partial file was removed. The source is corrupt or "
                f"not at commit {self.manifest.commit}.")


def mean_asset(variant: str, fold: int) -> str:
    return f"mean_images/mean_image{VARIANT_SUFFIX[variant]}/Test_fold_is_{fold}/mean.binaryproto"


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress_bar(total: int, count: int, progress):
    if progress is False:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                desc=f"upstream files ({count})", disable=None if progress is None else not progress)


def _copy(src: str, part: Path, asset: Asset, bar) -> None:
    if not os.path.isfile(src):
        raise AssetError(f"{asset.path}: not found in the mirror folder (looked for {src})")
    with open(src, "rb") as fin, open(part, "wb") as fout:
        for chunk in iter(lambda: fin.read(CHUNK), b""):
            fout.write(chunk)
            bar.update(len(chunk))


def _download(url: str, part: Path, asset: Asset, bar, timeout: float, headers: dict | None = None,
              hint: str = "use --assets-mirror DIR_OR_URL") -> None:
    """Download ``url`` into ``part``, resuming from its current size with HTTP Range.

    ``headers`` are sent with every request (e.g. the Basic authentication of a WebDAV share);
    ``hint`` ends the message of a failed download (what else the user can do)."""
    last_error = None
    reported = 0  # bytes of this file already shown on the progress bar

    def advance(pos: int) -> None:
        nonlocal reported
        if pos > reported:
            bar.update(pos - reported)
            reported = pos

    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if have > asset.size:
            part.unlink()
            have = 0
        if have == asset.size:
            return
        request_headers = {"User-Agent": "caffe-agegender-repro", **(headers or {})}
        if have:
            request_headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=request_headers),
                                        timeout=timeout) as resp:
                if have and resp.status != 206:  # the server ignored the range: start again
                    have = 0
                advance(have)
                with open(part, "ab" if have else "wb") as fh:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        fh.write(chunk)
                        have += len(chunk)
                        advance(have)
            if have >= asset.size:
                return
            # http.client returns b"" on a premature end instead of raising: resume
            last_error = f"connection closed after {have} of {asset.size} bytes"
            continue
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.exists():  # range not satisfiable: restart from zero
                part.unlink()
                last_error = exc
                continue
            if exc.code < 500:
                raise AssetError(f"{asset.path}: HTTP {exc.code} {exc.reason} from {url}") from None
            last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = exc  # interrupted: the next attempt resumes from what .part holds
    raise AssetError(f"{asset.path}: download from {url} failed after {ATTEMPTS} attempts ({last_error}); "
                     f"run again to resume from {part}, or {hint}")


def main(argv=None) -> int:
    """``python -m reproduce.assets [--mirror M] [--root DIR]``: fetch every upstream file."""
    import argparse
    parser = argparse.ArgumentParser(description="fetch every upstream file listed in the manifest")
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    try:
        paths = AssetStore(args.root, args.mirror).fetch_all()
    except AssetError as exc:
        print(f"assets: {exc}", file=sys.stderr)
        return 2
    print(f"{len(paths)} upstream files verified under {AssetStore(args.root).root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
