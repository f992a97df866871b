"""run.py's command line as a whole: the overview without arguments, no abbreviated options, and
the shared options module the modes use."""
import pytest

from reproduce import options, run

MODES = ("table", "list", "fetch", "demo", "predict", "explain", "train", "study")


def test_no_arguments_print_an_overview_naming_every_mode(capsys):
    assert run.main([]) == 2
    captured = capsys.readouterr()
    for mode in MODES:
        assert f"\n  {mode} " in captured.out, mode
    assert "--help" in captured.out
    assert captured.err.startswith("run.py: error: one of --table") and len(captured.err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["--demo", "--demo-iter", "5"], ["--tab", "2", "--list"]])
def test_abbreviated_options_are_errors(argv, capsys):
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unrecognized arguments" in err[0], err


def test_full_option_names_still_work(capsys):
    assert run.main(["--list", "--table", "2"]) == 0
    assert "m,w" in capsys.readouterr().out


def test_folds_parsing_is_shared_and_names_the_option():
    assert options.parse_folds("3;1,1") == [1, 3]
    assert run.parse_folds is options.parse_folds
    with pytest.raises(options.UsageError, match="--folds"):
        options.parse_folds("7")
