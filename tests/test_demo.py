"""``flowrestore demo`` (photo restoration with the shipped predictors) runs end to end."""

import json
import re

from flowrestore.cli import main


def test_demo_quick_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "center crops 64x64" in text and "PSNR" in text and "NFE" in text
    for task in ("deblur", "sr4", "dirac-deblur"):
        assert f"### {task}" in text
    assert "perception–distortion" in text
    # InDI's rows compare against the multistep solver restore uses by default
    assert re.search(r"InDI perception–distortion: 1 NFE .*; multistep 6 steps \(6 NFE\)", text)
    table, fig, js = out / "table.md", out / "restorations.png", out / "results.json"
    assert table.exists() and fig.exists() and fig.stat().st_size > 10_000
    assert str(fig) in text and str(table) in text
    res = json.loads(js.read_text())
    for rows in res["tasks"].values():
        assert rows[0]["solver"] == "input" and rows[0]["nfe"] == 0
        assert all(r["nfe"] >= 1 for r in rows[1:])
        # the best restoration beats the degraded input
        assert max(r["psnr"] for r in rows[1:]) > rows[0]["psnr"]


def test_demo_options_choose_task_solver_and_steps(tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "demo",
                "--task",
                "deblur",
                "--solver",
                "euler",
                "heun",
                "--steps",
                "1",
                "3",
                "--crop",
                "32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())["tasks"]["deblur"]
    got = [(r["solver"], r["steps"], r["nfe"]) for r in rows[1:]]
    assert got == [("euler", 1, 1), ("euler", 3, 3), ("heun", 1, 1), ("heun", 3, 5)]
    assert "sr4" not in capsys.readouterr().out


def test_toy_demo_is_still_available(capsys):
    assert main(["demo", "--task", "toy", "--quick"]) == 0
    assert "Gaussian prior" in capsys.readouterr().out


def test_demo_reruns_over_its_own_outputs_and_never_replaces_a_users_file(tmp_path, capsys):
    """A second ``demo --out DIR`` replaces what the first wrote there; a ``results.json``,
    ``table.md`` or ``restorations.png`` the demo did not write is refused before any work, and
    left as it was."""
    import pytest
    from PIL import Image

    from flowrestore.demo.settings import OUTPUTS, check_demo_outputs
    from flowrestore.errors import ConfigError

    out = tmp_path / "demo"
    args = ["demo", "--quick", "--task", "deblur", "--solver", "euler", "--steps", "1"]
    for _ in range(2):
        assert main([*args, "--out", str(out), "--device", "cpu"]) == 0
    assert check_demo_outputs(out) == out  # its own three files
    for name in OUTPUTS:
        mine = tmp_path / f"mine-{name}"
        mine.mkdir()
        if name.endswith(".png"):
            Image.new("RGB", (4, 4)).save(mine / name)
        else:
            (mine / name).write_text('{"crop": 1}' if name.endswith(".json") else "# notes\n")
        before = (mine / name).read_bytes()
        with pytest.raises(ConfigError, match=f"{name} exists and was not written"):
            check_demo_outputs(mine)
        capsys.readouterr()
        assert main([*args, "--out", str(mine), "--device", "cpu"]) == 2
        assert "not written by flowrestore demo" in capsys.readouterr().err
        assert (mine / name).read_bytes() == before and sorted(mine.iterdir()) == [mine / name]
