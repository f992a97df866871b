"""Write ``face_ssd_small.prototxt`` (OpenCV's res10 SSD face detector with the trunk widths / 8, for
tests with random weights) and check the packaged full-size deploy prototxt is current.

    PYTHONPATH=. python tests/data/cvdnn/make_face_ssd.py
"""
from pathlib import Path

from reproduce.face_ssd_net import res10_prototxt

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    (HERE / "face_ssd_small.prototxt").write_text(res10_prototxt(div=8, name="res10_300x300_ssd_small"))
    (HERE.parent.parent.parent / "reproduce" / "data" / "res10_300x300_ssd_deploy.prototxt").write_text(
        res10_prototxt())
