"""reproduce.folds: the upstream fold-list procedure, pinned on the REAL Adience fold files.

The committed upstream lists were drawn with an unseeded RNG, so only what the procedure
determines is compared: test lists as multisets, train+val as "all valid pool entries but one"
(quirk Q-D2), the label mapping (Q-D1) and the class histograms of spec section 4.5.

Without the real files the same tests run on the synthetic stand-in (``upstream_tree``): fold files
with the same quirks and lists drawn by a second, independent implementation of the upstream
procedure (tests/upstream_standin.py); the expected numbers are then the stand-in's own.
"""
from collections import Counter

import pytest

from reproduce import folds as F

# spec 4.5: [i] test-fold age histograms (labels 0..7) and gender m/f
AGE_TEST_HIST = {
    0: [960, 495, 213, 155, 1580, 555, 219, 139],
    1: [84, 483, 601, 525, 635, 469, 146, 158],
    2: [840, 373, 475, 274, 777, 277, 120, 203],
    3: [151, 238, 499, 473, 898, 494, 104, 118],
    4: [484, 574, 344, 228, 1060, 505, 241, 257],
}
GENDER_TEST_HIST = {0: [2049, 1958], 1: [1607, 2017], 2: [1410, 1781], 3: [1505, 1813], 4: [1621, 1842]}
POOL_SIZES = [14991, 15742, 15534, 16028, 15653]
ROWS = [4496, 3745, 3953, 3459, 3834]
# spec 4.5 (train / val / test / train_subset) of the committed [i] lists; only test is fixed by the
# procedure, train + val is fixed up to the one lost pool element.
AGE_I = {0: (11823, 1284, 4316), 1: (12894, 1428, 3101), 2: (12655, 1429, 3339), 3: (12991, 1457, 2975),
         4: (12371, 1359, 3693)}
GENDER_I = {0: (12256, 1339, 4007), 1: (12574, 1404, 3624), 2: (12986, 1425, 3191), 3: (12854, 1430, 3318),
            4: (12717, 1422, 3463)}


@pytest.fixture(scope="module")
def facts(upstream_tree):
    """Rows, pool sizes, [i] test histograms and committed [i] list sizes: spec 4.1/4.5 for the real
    files, the stand-in's construction for it."""
    if not upstream_tree.synthetic:
        return dict(rows=ROWS, pool_sizes=POOL_SIZES, hist={"age": AGE_TEST_HIST, "gender": GENDER_TEST_HIST},
                    sizes={"age": AGE_I, "gender": GENDER_I})
    f = upstream_tree.facts
    return dict(rows=f["rows"], pool_sizes=f["pool_sizes"],
                hist={t: {k: f["test_hist"][(k, t)] for k in range(5)} for t in F.TARGETS},
                sizes={t: {k: tuple(f["lists"][("i", k, t, p)] for p in ("train", "val", "test")) for k in range(5)}
                       for t in F.TARGETS})


@pytest.fixture(scope="module")
def upstream(upstream_tree):
    """The folder the lists are read from (the real upstream repository or the stand-in)."""
    return upstream_tree.root


@pytest.fixture(scope="module")
def real_rows(upstream):
    return F.read_folds(upstream / "folds" / "original_txt_files")


@pytest.fixture(scope="module")
def splits(real_rows):
    return {(v, k): F.split_fold(real_rows, k, v, seed=0) for v in "irm" for k in range(5)}


def _committed(upstream, variant, k, target, part):
    return F.read_list(upstream / "folds" / F.VARIANTS[variant].list_folder / f"test_fold_is_{k}"
                       / f"{target}_{part}.txt")


def test_real_fold_files_parse(real_rows, facts):
    assert [len(r) for r in real_rows] == facts["rows"]
    assert all(len(r.user_id) and r.original_image.endswith(".jpg") for fold in real_rows for r in fold)


def test_folds_are_subject_disjoint(request):
    """A fact of the real data (the stand-in is disjoint by construction): upstream only."""
    real = request.getfixturevalue("upstream_tree")
    if real.synthetic:
        pytest.skip("a fact of the real Adience fold files: upstream data files not found (set UPSTREAM_DIR)")
    users = [{r.user_id for r in fold} for fold in F.read_folds(real.root / "folds" / "original_txt_files")]
    for a in range(5):
        for b in range(a + 1, 5):
            assert not users[a] & users[b]


def test_label_mapping_quirk_q_d1():
    assert [F.age_label(a) for a in F.AGE_GROUPS] == list(range(8))
    assert F.age_label("(25, 23)") is None          # the data's spelling: the repair never fires
    for bad in ("(38, 42)", "(38, 48)", "(27, 32)", "(8, 23)", "35", "None", ""):
        assert F.age_label(bad) is None
    assert (F.gender_label("m"), F.gender_label("f")) == (0, 1)
    assert F.gender_label("u") is None and F.gender_label("") is None


@pytest.mark.parametrize("variant", "irm")
def test_test_lists_equal_committed_as_multisets(upstream, splits, variant):
    for k in range(5):
        for target in F.TARGETS:
            mine = Counter(splits[(variant, k)].lists[(target, "test")])
            assert mine == Counter(_committed(upstream, variant, k, target, "test")), (variant, k, target)


@pytest.mark.parametrize("variant", "irm")
def test_committed_train_val_lose_exactly_one_pool_element_q_d2(upstream, real_rows, splits, variant, facts):
    """Committed train+val = every valid pool entry except one (the same entry for both targets)."""
    var = F.VARIANTS[variant]
    for k in range(5):
        split = splits[(variant, k)]
        mult = len(var.prefixes)
        assert split.pool_size == facts["pool_sizes"][k] * mult
        lost_paths = set()
        for target in F.TARGETS:
            committed = (Counter(_committed(upstream, variant, k, target, "train"))
                         + Counter(_committed(upstream, variant, k, target, "val")))
            mine = split.lists[(target, "train")] + split.lists[(target, "val")]
            pool_valid = Counter(mine)
            if split.dropped[0]:  # our own lost element, if valid for this target, belongs to the pool
                row = next(r for kk, f in enumerate(real_rows) if kk != k for r in f
                           for p in var.prefixes if r.image_path(p) == split.dropped[0])
                label = F.LABELS[target](row.age if target == "age" else row.gender)
                if label is not None:
                    pool_valid[(split.dropped[0], label)] += 1
            assert not committed - pool_valid, (variant, k, target)
            lost = pool_valid - committed
            assert sum(lost.values()) <= 1
            lost_paths |= {path for path, _ in lost}
            subset = Counter(_committed(upstream, variant, k, target, "train_subset"))
            assert not subset - Counter(_committed(upstream, variant, k, target, "train"))
        assert len(lost_paths) == 1, (variant, k, lost_paths)


def test_split_sizes_and_counts_of_spec_4_5(splits, facts):
    for k in range(5):
        s = splits[("i", k)]
        n10 = facts["pool_sizes"][k] // 10
        for target, table in facts["sizes"].items():
            train, val, test = (len(s.lists[(target, p)]) for p in ("train", "val", "test"))
            assert test == table[k][2]
            assert train + val in (table[k][0] + table[k][1], table[k][0] + table[k][1] + 1)
            assert val <= n10 and len(s.lists[(target, "train_subset")]) <= n10 - 1
        hist = Counter(label for _, label in s.lists[("age", "test")])
        assert [hist[c] for c in range(8)] == facts["hist"]["age"][k]
        hist = Counter(label for _, label in s.lists[("gender", "test")])
        assert [hist[0], hist[1]] == facts["hist"]["gender"][k]


def test_variant_test_relations(splits):
    for k in range(5):
        for target in F.TARGETS:
            i = Counter(splits[("i", k)].lists[(target, "test")])
            r = Counter(splits[("r", k)].lists[(target, "test")])
            m = Counter(splits[("m", k)].lists[(target, "test")])
            swapped = Counter({(p.replace(F.LANDMARK, F.COARSE, 1), lab): n for (p, lab), n in i.items()})
            assert r == swapped
            assert m == i + r


def test_val_is_first_tenth_and_one_element_dropped():
    rows = [F.FaceRow(f"u{k}", f"{j}.jpg", str(j), "(0, 2)", "m", *["0"] * 7) for k in range(5) for j in range(20)]
    folds = [rows[20 * k:20 * (k + 1)] for k in range(5)]
    s = F.split_fold(folds, 2, "i", seed=1)
    assert s.pool_size == 80
    assert len(s.lists[("age", "val")]) == 8 and len(s.lists[("age", "train")]) == 80 - 9
    assert len(s.lists[("age", "train_subset")]) == 7
    assert set(s.lists[("age", "train_subset")]) <= set(s.lists[("age", "train")])
    everything = {p for part in ("train", "val") for p, _ in s.lists[("age", part)]} | {s.dropped[0]}
    assert len(everything) == 80
    m = F.split_fold(folds, 2, "m", seed=1)
    assert m.pool_size == 160 and len(m.lists[("age", "test")]) == 40
    assert F.split_fold(folds, 2, "i", seed=1).lists == s.lists          # seeded = repeatable
    assert F.split_fold(folds, 2, "i", seed=2).lists != s.lists


def test_written_files_have_upstream_names_and_format(tmp_path):
    rows = [F.FaceRow(f"u{k}@N0{k}", f"{j}_ab_o.jpg", str(j), "(4, 6)", "fu"[j % 2], *["0"] * 7)
            for k in range(5) for j in range(10)]
    path = tmp_path / "folds"
    path.mkdir()
    for k in range(5):
        text = "\t".join(F.FOLD_COLUMNS) + "\n" + "".join(
            "\t".join([r.user_id, r.original_image, r.face_id, r.age, r.gender] + ["0"] * 7) + "\n"
            for r in rows[10 * k:10 * (k + 1)])
        (path / f"fold_{k}_data.txt").write_text(text)
    F.make_fold_lists(path, tmp_path / "out", variants="irm", seed=0)
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.txt"))
    assert len(names) == 3 * 5 * 8
    assert "train_val_txt_files_per_fold/test_fold_is_0/age_train_subset.txt" in names
    assert "squared_unaligned_train_val_txt_files_per_fold/test_fold_is_4/gender_val.txt" in names
    assert "mixed_train_val_txt_files_per_fold/test_fold_is_2/age_test.txt" in names
    text = (tmp_path / "out/train_val_txt_files_per_fold/test_fold_is_0/gender_test.txt").read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 5      # only the "f" rows (the "u" ones are dropped)
    assert all(line.startswith("u0@N00/landmark_aligned_face.") and line.endswith(" 1") for line in lines)


@pytest.mark.parametrize("text, line, what", [
    ("user_id\tage\n", 1, "header"),
    ("\t".join(F.FOLD_COLUMNS) + "\nu1\ta.jpg\t1\t(0, 2)\tm\n", 2, "12 tab-separated columns"),
    ("\t".join(F.FOLD_COLUMNS) + "\n" + "\t".join(["u1", "a.jpg", "x", "(0, 2)", "m"] + ["0"] * 7) + "\n",
     2, "face_id"),
    ("\t".join(F.FOLD_COLUMNS) + "\n\n" + "\t".join(["", "a.jpg", "1", "(0, 2)", "m"] + ["0"] * 7), 3,
     "user_id"),
])
def test_malformed_rows_name_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "fold_0_data.txt"
    path.write_text(text)
    with pytest.raises(F.FoldFileError) as err:
        F.read_fold_file(path)
    assert str(err.value).startswith(f"{path}:{line}: ") and what in str(err.value)
    assert err.value.line == line


def test_cli_writes_lists(tmp_path, upstream, capsys, facts):
    rc = F.main([str(upstream / "folds" / "original_txt_files"), str(tmp_path), "--variants", "r"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"[r] test_fold_is_0: N={facts['pool_sizes'][0]}" in out and f"age_test={facts['sizes']['age'][0][2]}" in out
    assert (tmp_path / "squared_unaligned_train_val_txt_files_per_fold/test_fold_is_3/age_test.txt").is_file()
    assert F.main([str(tmp_path / "nowhere"), str(tmp_path)]) == 2
