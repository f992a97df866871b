"""Write ``reproduce/data/upstream_manifest.json`` from a local copy of the upstream repository.

Run once by a maintainer (the manifest is committed; the files themselves are not)::

    python reproduce/make_manifest.py /path/to/understanding-age-gender-deep-learning-models

Only the data files the package uses are listed (model definitions, fold lists, mean images,
heatmap synsets); code, README and pictures are not.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

COMMIT = "5bc05b96d9c48a2cb6752a3bc59a74f21d9a5b97"
REPOSITORY = "sebastian-lapuschkin/understanding-age-gender-deep-learning-models"
URL_TEMPLATE = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{{path}}"
# upstream folder -> folder under the asset root (the repository root by default)
LAYOUT = {
    "model_definitions/": "prototxt/",
    "folds/": "folds/",
    "mean_images/": "mean_images/",
    "heatmap_drawing/": "prototxt/synsets/",
}
OUT = Path(__file__).resolve().parent / "data" / "upstream_manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(upstream: Path) -> dict:
    files = []
    for path in sorted(p for p in upstream.rglob("*") if p.is_file()):
        rel = path.relative_to(upstream).as_posix()
        if not any(rel.startswith(prefix) for prefix in LAYOUT):
            continue
        files.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return {
        "repository": REPOSITORY,
        "commit": COMMIT,
        "url_template": URL_TEMPLATE,
        "layout": LAYOUT,
        "total_bytes": sum(f["size"] for f in files),
        "files": files,
    }


def dump(manifest: dict) -> str:
    """JSON with one line per file (diff-friendly)."""
    head = {k: v for k, v in manifest.items() if k != "files"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "files": [\n'
    text += ",\n".join("  " + json.dumps(f) for f in manifest["files"])
    return text + "\n ]\n}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="checkout of the upstream repository at the pinned commit")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.upstream / "model_definitions").is_dir():
        print(f"make_manifest: {args.upstream}: no model_definitions/ folder", file=sys.stderr)
        return 2
    manifest = build(args.upstream)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(manifest), encoding="utf-8")
    print(f"{args.out}: {len(manifest['files'])} files, {manifest['total_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
