"""The command line: the toy-posterior demonstration prints its tables."""

from flowrestore.cli import main


def test_toy_demo_prints_tables(capsys):
    assert main(["demo", "--task", "toy", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "Gaussian prior" in out and "landing frequency" in out
    # every solver row reports a finite error
    rows = [line for line in out.splitlines() if line.startswith("| ") and "e-" in line]
    assert len(rows) >= 10
