"""reproduce.synthetic (the demo's Adience stand-in) and reproduce.squaring (the [r] padding)."""
import hashlib
from collections import Counter

import cv2
import numpy as np
import pytest

from reproduce import folds as F
from reproduce import squaring, synthetic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = synthetic.generate(root, seed=3, rows_per_fold=40, users_per_fold=5)
    return root, summary


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_fold_files_have_the_real_format(dataset):
    root, summary = dataset
    for k in range(5):
        text = (root / f"fold_{k}_data.txt").read_text()
        lines = text.split("\n")
        assert lines[0] == "\t".join(F.FOLD_COLUMNS) and text.endswith("\n") and "\r" not in text
        assert all(len(line.split("\t")) == 12 for line in lines[1:-1])
    rows = F.read_folds(root)
    assert [len(r) for r in rows] == summary["rows"] == [42] * 5      # 40 drawn + 2 exact duplicates
    for fold in rows:
        dup = Counter(fold)
        assert sum(n - 1 for n in dup.values()) == 2
        for r in fold:
            assert r.original_image.endswith("_o.jpg") and "@N" in r.user_id
            assert all(getattr(r, c).lstrip("-").isdigit() for c in F.FOLD_COLUMNS[5:])


def test_folds_are_subject_exclusive_and_balanced(dataset):
    root, _ = dataset
    rows = F.read_folds(root)
    users = [{r.user_id for r in fold} for fold in rows]
    assert all(not users[a] & users[b] for a in range(5) for b in range(a + 1, 5))
    ages = Counter(F.age_label(r.age) for fold in rows for r in fold)
    assert all(ages[c] >= 5 for c in range(8))
    genders = Counter(r.gender for fold in rows for r in fold)
    assert genders["m"] > 50 and genders["f"] > 50


def test_awkward_rows_like_adience(tmp_path):
    synthetic.generate(tmp_path, seed=0, rows_per_fold=100, users_per_fold=8, image_size=24)
    rows = F.read_folds(tmp_path)
    ages = Counter(r.age for fold in rows for r in fold)
    genders = Counter(r.gender for fold in rows for r in fold)
    assert {r.age for r in rows[0]} >= {"(25, 23)"}
    assert all(r.age != "(25, 23)" for fold in rows[1:] for r in fold)
    off_grid = [a for a in ages if F.age_label(a) is None]
    assert "None" in off_grid and any(a.isdigit() for a in off_grid) and len(off_grid) >= 4
    assert genders["u"] > 0 and genders[""] > 0


def test_images_exist_aligned_square_coarse_not(dataset):
    root, summary = dataset
    rows = F.read_folds(root)
    for fold in rows:
        for r in fold:
            a = cv2.imread(str(root / "aligned" / r.image_path(F.LANDMARK)))
            c = cv2.imread(str(root / "faces" / r.image_path(F.COARSE)))
            assert a.shape == (64, 64, 3)
            assert c is not None and c.shape[0] != c.shape[1]


def test_deterministic(dataset, tmp_path):
    root, _ = dataset
    synthetic.generate(tmp_path / "again", seed=3, rows_per_fold=40, users_per_fold=5)
    assert _digest(tmp_path / "again") == _digest(root)
    synthetic.generate(tmp_path / "other", seed=4, rows_per_fold=40, users_per_fold=5)
    assert (tmp_path / "other/fold_0_data.txt").read_text() != (root / "fold_0_data.txt").read_text()


def test_fold_lists_of_the_synthetic_set_point_at_images(dataset, tmp_path):
    root, _ = dataset
    squaring.square_faces_folder(root / "faces", tmp_path / "faces_squared")
    splits = F.make_fold_lists(root, tmp_path / "folds", variants="ir", test_folds=[1], seed=0)
    for variant, image_root in (("i", root / "aligned"), ("r", tmp_path / "faces_squared")):
        split = splits[(variant, 1)]
        for (target, part), entries in split.lists.items():
            assert part == "train_subset" or entries, (variant, target, part)
            for path, label in entries:
                assert (image_root / path).is_file()
                assert 0 <= label < (8 if target == "age" else 2)
    assert not any("(25, 23)" in p for p, _ in splits[("i", 1)].lists[("age", "train")])


def test_pad_to_square_replicates_edges():
    tall = np.arange(5 * 2 * 3).reshape(5, 2, 3)       # d = 3: 1 column left, 2 right
    sq = squaring.pad_to_square(tall)
    assert sq.shape == (5, 5, 3)
    assert np.array_equal(sq[:, 1:3], tall)
    assert np.array_equal(sq[:, 0], tall[:, 0])
    assert np.array_equal(sq[:, 3], tall[:, -1]) and np.array_equal(sq[:, 4], tall[:, -1])
    wide = np.arange(2 * 6).reshape(2, 6)                # d = 4: 2 rows on top, 2 below
    sq = squaring.pad_to_square(wide)
    assert sq.shape == (6, 6) and np.array_equal(sq[2:4], wide)
    assert np.array_equal(sq[:2], wide[[0, 0]]) and np.array_equal(sq[4:], wide[[1, 1]])
    square = np.zeros((3, 3))
    assert squaring.pad_to_square(square).shape == (3, 3)
    with pytest.raises(ValueError):
        squaring.pad_to_square(np.zeros(4))


def test_square_faces_folder(tmp_path):
    src = tmp_path / "faces" / "u1@N01"
    src.mkdir(parents=True)
    img = np.zeros((30, 20, 3), np.uint8)
    img[:, 0] = 200                                         # first column bright
    cv2.imwrite(str(src / "coarse_tilt_aligned_face.1.a_o.png"), img)
    cv2.imwrite(str(src / "landmark_aligned_face.1.a_o.png"), img)   # not a coarse face: ignored
    n = squaring.square_faces_folder(tmp_path / "faces", tmp_path / "faces_squared")
    assert n == 1
    out = cv2.imread(str(tmp_path / "faces_squared/u1@N01/coarse_tilt_aligned_face.1.a_o.png"))
    assert out.shape == (30, 30, 3)
    assert (out[:, :6] == 200).all() and (out[:, 6:] == 0).all()   # 5 replicated + the original column
