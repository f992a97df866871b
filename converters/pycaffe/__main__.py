"""``python -m converters.pycaffe SCRIPT [ARGS...]``: run a pycaffe script unchanged.

``import caffe`` in the script (and in the modules it imports) gives :mod:`converters.pycaffe`.
"""
from __future__ import annotations

import runpy
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    from . import install

    install()
    script = argv[0]
    sys.argv = argv
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
