"""The command line: the toy-posterior demonstration prints its tables."""

from flowrestore.cli import main


def test_toy_demo_prints_tables(capsys):
    assert main(["demo", "--task", "toy", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "Gaussian prior" in out and "landing frequency" in out
    # every solver row reports a finite error
    rows = [line for line in out.splitlines() if line.startswith("| ") and "e-" in line]
    assert len(rows) >= 10


def test_pretrained_lists_the_shipped_predictors(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    for name in ("indi-deblur", "indi-sr4", "dirac-deblur"):
        assert f"{name}:" in out
    assert "python -m flowrestore.training.trainer" in out


def test_demo_defaults_to_the_photo_tasks():
    from flowrestore.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.task == "all" and args.func.__name__ == "_demo"
