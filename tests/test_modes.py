"""run.py's modes (reproduce/modes.py): one parser per mode holding only that mode's options, the
subcommand and the flag style reading the same namespace, an option of another mode refused in
one line, and user errors of a mode reported as one line with exit code 2."""
import pytest

from reproduce import modes, run
from reproduce.options import UsageError

PARSER_MODES = ("table", "demo", "predict", "explain", "train", "study")


def options_of(mode):
    return set(modes.build_parser(mode)._option_string_actions) - {"-h", "--help"}


@pytest.mark.parametrize("mode,has,lacks", [
    ("table", {"--table", "--row", "--folds", "--lmdb", "--weights", "--list", "--fetch-assets", "--fetch",
               "--backend"}, {"--init", "--predict", "--images", "--demo-iters", "--study", "--fold", "--iters"}),
    ("train", {"--table", "--folds", "--lmdb", "--init", "--iters", "--no-eval", "--fetch"},
     {"--list", "--fetch-assets", "--images", "--predict", "--study", "--demo-out", "--fold"}),
    ("predict", {"--predict", "--fold", "--deploy", "--detect-faces", "--explain", "--weights"},
     {"--folds", "--lmdb", "--init", "--images", "--list", "--study", "--source"}),
    ("explain", {"--explain", "--images", "--table", "--folds", "--eps", "--weights", "--means"},
     {"--lmdb", "--adience", "--init", "--predict", "--device", "--list"}),
    ("demo", {"--demo", "--demo-out", "--demo-iters", "--out", "--device", "--no-progress"},
     {"--table", "--weights", "--init", "--list", "--folds"}),
    ("study", {"--study", "--init", "--list", "--row", "--folds", "--fairface", "--lmdb"},
     {"--table", "--weights", "--col", "--iters", "--predict", "--means"}),
])
def test_each_mode_parser_has_only_its_options(mode, has, lacks):
    opts = options_of(mode)
    assert has <= opts, has - opts
    assert not (lacks & opts), lacks & opts


def test_init_means_a_folder_for_train_and_a_file_for_study():
    train = modes.build_parser("train")._option_string_actions["--init"]
    study = modes.build_parser("study")._option_string_actions["--init"]
    assert train.metavar == "DIR" and "bvlc_reference_caffenet" in train.help
    assert study.metavar == "FILE" and "state_dict" in study.help
    assert run.build_parser().parse_args(["--train", "--table", "2", "--init", "d"]).init == "d"
    assert run.build_parser().parse_args(["--study", "mtl2022", "--init", "f.pt"]).init == "f.pt"


@pytest.mark.parametrize("argv,option,owners", [
    (["--table", "2", "--init", "x"], "--init", "train, study modes"),
    (["--demo", "--table", "2"], "--table", "modes"),
    (["table", "--table", "2", "--images", "a.jpg"], "--images", "explain mode"),
    (["--study", "mtl2022", "--weights", "w"], "--weights", "modes"),
    (["--train", "--table", "2", "--list"], "--list", "modes"),
    (["--predict", "a.jpg", "--folds", "0"], "--folds", "modes"),
])
def test_an_option_of_another_mode_is_a_one_line_error(argv, option, owners, capsys):
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("run.py: error: unrecognized arguments: ")
    assert f"({option} is an option of the " in err[0] and owners in err[0], err[0]


def test_an_unknown_option_is_a_plain_unrecognized_argument(capsys):
    assert run.main(["--table", "2", "--no-such-option"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "run.py: error: unrecognized arguments: --no-such-option"


@pytest.mark.parametrize("flag_style,subcommand", [
    (["--table", "2", "--row", "m,w", "--folds", "0"], ["table", "--table", "2", "--row", "m,w", "--folds", "0"]),
    (["--list", "--table", "3"], ["list", "--table", "3"]),
    (["--fetch-assets", "--assets-dir", "a"], ["fetch", "--assets-dir", "a"]),
    (["--table", "2", "--row", "i", "--col", "A", "--train", "--init", "d", "--iters", "5"],
     ["train", "--table", "2", "--row", "i", "--col", "A", "--init", "d", "--iters", "5"]),
    (["--explain", "--table", "3", "--row", "i", "--images", "a.jpg", "b.jpg:1"],
     ["explain", "--table", "3", "--row", "i", "--images", "a.jpg", "b.jpg:1"]),
    (["--demo", "--demo-iters", "3", "--out", "o"], ["demo", "--demo-iters", "3", "--out", "o"]),
    (["--study", "mtl2022", "--list"], ["study", "mtl2022", "--list"]),
    (["--study", "mtl2022", "--list"], ["study", "--study", "mtl2022", "--list"]),
    (["--predict", "a.jpg", "b", "--table", "3", "--row", "i", "--explain", "--out", "o"],
     ["predict", "a.jpg", "b", "--table", "3", "--row", "i", "--explain", "--out", "o"]),
    (["--study", "lapuschkin2017", "--table", "2"], ["table", "--table", "2"]),
    (["--study=lapuschkin2017", "--list"], ["list", "--study", "lapuschkin2017"]),
])
def test_subcommand_and_flag_style_parse_the_same_options(flag_style, subcommand):
    a = run.build_parser().parse_args(flag_style)
    b = run.build_parser().parse_args(subcommand)
    assert vars(a) == vars(b)


def test_the_mode_flag_precedence_of_the_flag_style():
    """--predict with --explain is a prediction with heatmaps (the predict mode's --explain)."""
    args = run.build_parser().parse_args(["--explain", "--predict", "a.jpg", "--out", "o"])
    assert args.mode == "predict" and args.explain and args.predict == ["a.jpg"]
    assert run.build_parser().parse_args(["--list"]).mode == "table"


@pytest.mark.parametrize("mode", [*PARSER_MODES, "list", "fetch"])
def test_mode_help_lists_the_modes_options(mode, capsys):
    assert run.main([mode, "--help"]) == 0
    out = capsys.readouterr().out
    base = "table" if mode in ("list", "fetch") else mode
    assert out.startswith(f"usage: run.py {base} ")
    for option in sorted(options_of(base))[:5]:
        assert option in out


def test_help_alone_is_the_overview_of_the_modes(capsys):
    assert run.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out == run.OVERVIEW + "\n" and "run.py MODE --help" in out


def test_flag_style_help_is_the_modes_help(capsys):
    assert run.main(["--train", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: run.py train ")


def test_a_user_error_a_mode_lets_through_is_one_line(monkeypatch, capsys):
    from reproduce import table

    def boom(args):
        raise UsageError("--weights w: something the mode did not catch")
    monkeypatch.setattr(table, "run", boom)
    assert run.main(["--table", "2"]) == 2
    assert capsys.readouterr().err == "run.py: error: --weights w: something the mode did not catch\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    from reproduce import table

    def bug(args):
        raise KeyError("not a user error")
    monkeypatch.setattr(table, "run", bug)
    with pytest.raises(KeyError):
        run.main(["--table", "2"])


def test_study_subcommand_without_a_study_is_one_line(capsys):
    assert run.main(["study", "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--study mtl2022|fusion2022" in err[0]


def test_train_evaluates_with_the_table_modes_own_options(tmp_path):
    """eval_args is the table parser's reading of the printed 'Evaluate later with' command."""
    from pathlib import Path

    from reproduce import train
    args = run.build_parser().parse_args(["train", "--table", "2", "--row", "i", "--col", "A", "--folds", "1",
                                          "--iters", "7", "--lmdb", "L", "--backend", "torch", "--no-progress"])
    ns = train.eval_args(args, Path("W"), Path("O"), [1])
    assert ns.mode == "table" and ns.iter == 7 and ns.weights == "W" and ns.out == "O" and ns.folds == "1"
    assert ns.lmdb == "L" and ns.backend == "torch" and ns.no_progress and not ns.list and not ns.fetch_assets
    assert not hasattr(ns, "iters") and not hasattr(ns, "init")


def test_module_entry_points_use_the_mode_parser_under_their_own_name(capsys):
    from reproduce import demo, predict
    assert predict.main_predict(["a.jpg", "--folds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("predict: error: unrecognized arguments: --folds 0 (--folds is an "
                                               "option of the table, explain, train, study modes, not of predict; "
                                               "python -m reproduce.predict --help"), err
    assert demo.main_demo(["--table", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("demo: error: unrecognized arguments: --table 2"), err
