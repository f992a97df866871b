"""converters.formats.images: the one convert_imageset-style image read and squash."""
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is needed to read images")

from converters.formats.images import read_image, squash  # noqa: E402


def _png(tmp_path, h=30, w=20):
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), img)
    return path, img


def test_read_image_is_imread_bgr_and_none_when_unreadable(tmp_path):
    path, img = _png(tmp_path)
    np.testing.assert_array_equal(read_image(path), img)
    assert read_image(path, color=False).shape == (30, 20)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert read_image(bad) is None


def test_squash_is_convert_imagesets_inter_linear_resize(tmp_path):
    _, img = _png(tmp_path)
    np.testing.assert_array_equal(squash(img, 16, 24), cv2.resize(img, (24, 16), interpolation=cv2.INTER_LINEAR))
    assert squash(img, 30, 20) is img


def test_adience_faces_and_lrp_images_read_through_it(tmp_path):
    from converters.lrp.image import read_bgr
    from reproduce.sources import load_adience_image

    path, img = _png(tmp_path)
    np.testing.assert_array_equal(read_bgr(path), img)
    np.testing.assert_array_equal(load_adience_image(path, square=False, size=8),
                                  squash(img, 8, 8).transpose(2, 0, 1))
