"""The paper's table cells as data (reproduce.grid / reproduce/data/paper_tables.json)."""
import os
from pathlib import Path

import pytest

from reproduce import grid

SPEC = Path(os.environ.get("UPSTREAM_SPEC", Path(__file__).resolve().parents[2] / "shared" / "spec"
                           / "upstream-spec.md"))


def filled(tables):
    return [c for c in grid.all_cells() if c.table in tables and not c.empty]


def test_tables_2_and_3_have_38_filled_cells_one_per_model_folder():
    cells = filled((2, 3))
    assert len(cells) == 38
    assert len({c.folder for c in cells}) == 38
    assert sum(1 for c in grid.all_cells() if c.table in (2, 3)) == 72
    per_col = {col: sum(1 for c in cells if c.col == col and c.table == 2) for col in "ACGV"}
    assert per_col == {"A": 3, "C": 6, "G": 6, "V": 4}


def test_tables_4_and_5_swap_the_test_variant():
    cells = filled((4, 5))
    assert len(cells) == 20
    for c in cells:
        assert {c.train, c.test} == {"i", "r"} and c.mean == c.train
        assert c.published["paper"]["acc"] is not None and "readme" not in c.published
    assert grid.cell(4, "i,n", "A").empty and grid.cell(5, "[r,n]", "A").empty


def test_cell_lookup_and_family_records():
    c = grid.cell(2, "m,w", "V")
    assert (c.folder, c.train, c.test, c.mean, c.init) == ("age_imdbwiki_vgg16_mixed", "m", "r", "m", "imdbwiki")
    assert (c.input_size, c.output_blob, c.final_iter, c.snapshot_step) == (224, "prob", 250000, 2500)
    g = grid.cell(3, "[r,n]", "G")
    assert (g.folder, g.input_size, g.output_blob, g.final_iter) == (
        "gender_finetuning_googlenet_unaligned", 224, "loss3/loss3", 170000)
    a = grid.cell(2, "[m]", "A")
    assert (a.folder, a.input_size, a.final_iter, a.test) == ("age_net_definitions_mixed", 227, 100000, "r")
    assert grid.cell(3, "i", "C").final_iter == 50000 and grid.cell(2, "i,n", "V").final_iter == 125000
    assert grid.cell(2, "i", "V").empty and grid.cell(3, "r,w", "V").empty


def test_published_values_paper_and_readme_differ_where_the_spec_says():
    c = grid.cell(2, "[r]", "G")
    assert c.published["paper"] == {"acc": 53.3, "one_off": 89.9}
    assert c.published["readme"] == {"acc": 54.4, "one_off": 90.0}
    m = grid.cell(2, "[m,w]", "V")
    assert (m.published_value("paper"), m.published_value("paper", "one_off")) == (62.8, 95.8)
    assert grid.cell(3, "[m,n]", "G").published == {"paper": {"acc": 91.7}, "readme": {"acc": 92.0}}
    assert grid.cell(4, "[i,n]", "C").published_value("paper", "one_off") == 82.02  # printed so in the paper


def test_quirk_qg1_is_noted_on_gender_mixed_finetuned_googlenet():
    c = grid.cell(3, "m,n", "G")
    assert c.mean == "m" and any("Q-G1" in n for n in c.notes)
    assert not any("Q-G1" in n for x in grid.all_cells() if x != c for n in x.notes)


def test_row_and_column_parsing():
    assert grid.parse_rows(["m,w"], 2) == ["[m,w]"]
    assert grid.parse_rows(["i", "[m, n]", "i;r"], 2) == ["[i]", "[m,n]", "[r]"]
    assert grid.parse_rows(["all"], 4) == list(grid.ROWS[4])
    assert grid.parse_cols(["a,C", "g"], 2) == ["A", "C", "G"]
    with pytest.raises(grid.GridError, match="not in Table 4"):
        grid.parse_rows(["m"], 4)
    with pytest.raises(grid.GridError, match="column"):
        grid.parse_cols(["V"], 5)
    assert [c.label for c in grid.select(2, ["m,w"])] == [f"T2 age [m,w] {x}" for x in "ACGV"]


def test_listing_names_every_filled_folder():
    text = grid.format_listing()
    for c in filled((2, 3, 4, 5)):
        assert c.folder in text
    assert "(empty in the paper)" in text and "Q-G1" in text


def test_every_upstream_model_folder_is_one_cell(upstream):
    folders = sorted(p.name for p in (upstream / "model_definitions").iterdir() if p.is_dir())
    assert len(folders) == 38
    assert sorted(c.folder for c in filled((2, 3))) == folders


def test_published_values_equal_the_spec_yaml():
    if not SPEC.is_file():
        pytest.skip(f"spec not found at {SPEC} (set UPSTREAM_SPEC)")
    yaml = pytest.importorskip("yaml")
    text = SPEC.read_text(encoding="utf-8")
    block = text[text.index("published_results:"):]
    data = yaml.safe_load(block[:block.index("```")])
    checked = 0
    for rec in data["published_results"]:
        if rec["table"] == "paper_T1":
            continue
        table = {"paper_T2": 2, "paper_T3": 3, "paper_T4": 4, "paper_T5": 5}.get(rec["table"])
        source = "paper"
        if rec["table"] == "readme":
            table, source = (2 if rec["target"] == "age" else 3), "readme"
        c = grid.cell(table, rec["row"], rec["column"])
        assert not c.empty
        assert c.published_value(source) == rec["value"], (c.label, source)
        if rec["target"] == "age":
            assert c.published_value(source, "one_off") == rec["one_off"], (c.label, source)
        if "folder" in rec:
            assert c.folder == rec["folder"] and c.train == rec["train"] and c.test == rec["test"]
        checked += 1
    assert checked == 38 + 20 + 38
    empty = data["empty_cells"]
    for key, table_ids in (("paper_T2/readme age", (2, 3)), ("paper_T4", (4, 5))):
        for t in table_ids:
            got = sorted(f"{c.row}{c.col}" for c in grid.select(t) if c.empty)
            assert got == sorted(empty[key])
