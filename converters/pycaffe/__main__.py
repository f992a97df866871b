"""python -m converters.pycaffe SCRIPT [ARGS...]: run a pycaffe script unchanged.

import caffe in the script (and in the modules it imports) gives converters.pycaffe.
"""
from __future__ import annotations

import os
import runpy
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    script = argv[0]
    if not os.path.isfile(script):
        why = "is a folder, not a script" if os.path.isdir(script) else "no such file"
        print(f"python -m converters.pycaffe: error: {script}: {why}", file=sys.stderr)
        return 2
    from . import install

    install()
    sys.argv = argv
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
