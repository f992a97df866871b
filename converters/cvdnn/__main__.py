"""``python -m converters.cvdnn SCRIPT [ARGS...]``: run an OpenCV-4 dnn script with the Caffe
functions of :mod:`converters.cvdnn` installed into ``cv2.dnn``.

The script runs as ``__main__`` (``runpy``) with ``sys.argv = [SCRIPT, ARGS...]`` and its folder
first on ``sys.path``, as ``python SCRIPT ARGS`` would run it; its exit status is ours.
"""
from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m converters.cvdnn SCRIPT [ARGS...]"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\nRuns SCRIPT with cv2.dnn.readNetFromCaffe / readNet / blobFromImage(s) taken from "
              "converters.cvdnn (OpenCV 4 semantics, also under OpenCV 5).",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    script = argv[0]
    if not os.path.isfile(script):
        print(f"converters.cvdnn: {script}: no such script", file=sys.stderr)
        return 2
    from . import CvdnnError, install
    try:
        install()
    except CvdnnError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
