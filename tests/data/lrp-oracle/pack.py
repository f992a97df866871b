"""Pack golden cases of ``shared/lrp-oracle`` into this folder, losslessly and small.

    python tests/data/lrp-oracle/pack.py ../shared/lrp-oracle b_caffenet_age_woman1_c0 c_adiencenet_age_kid2_c3

Per case it writes ``<case>/case.json`` (copied) and ``<case>/golden.npz`` (compressed):

* ``pixels_q16`` uint16 (3, H, W): the demonstrator's input blob is ImageMagick Q16 pixels scaled
  to 0..255 (value/257) minus the constant mean, so ``(input + mean) * 257`` is an integer;
  ``float32(pixels_q16 / 257.0 - mean_bgr)`` gives ``input.npy`` back bit for bit (checked here).
* ``mean_bgr`` float64 (3,): the constant mean (B, G, R).
* ``relevance`` float32: (H, W) when the three channels of ``relevance.npy`` are identical (the
  flat rule at the first convolution gives every input channel the same share), else (3, H, W).

Refuses (exit 2) a case whose input does not round-trip exactly.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

MEAN_BGR = np.array([104.0, 117.0, 123.0])


def pack(src: Path, dst: Path) -> None:
    x = np.load(src / "input.npy")[0]
    r = np.load(src / "relevance.npy")
    q = np.round((x.astype(np.float64) + MEAN_BGR[:, None, None]) * 257.0)
    if q.min() < 0 or q.max() > 65535:
        raise SystemExit(f"{src}: input is not Q16 pixels minus the mean {MEAN_BGR}")
    q = q.astype(np.uint16)
    if not np.array_equal((q / 257.0 - MEAN_BGR[:, None, None]).astype(np.float32), x):
        raise SystemExit(f"{src}: input.npy does not round-trip through Q16 pixels exactly")
    rel = r[0] if all(np.array_equal(r[0], r[c]) for c in range(1, r.shape[0])) else r
    dst.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dst / "golden.npz", pixels_q16=q, mean_bgr=MEAN_BGR, relevance=rel.astype(np.float32))
    shutil.copyfile(src / "case.json", dst / "case.json")


def main(argv) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    root, here = Path(argv[0]), Path(__file__).resolve().parent
    for case in argv[1:]:
        pack(root / case, here / case)
        print(case, sum(f.stat().st_size for f in (here / case).iterdir()), "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
