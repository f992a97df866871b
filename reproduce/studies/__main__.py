"""``python -m reproduce.studies --study mtl2022|fusion2022 ...``: the follow-up studies (same options as
``run.py --study``, which is the wired entry point)."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
