"""The README's usage example runs as written, and its CI blocks are what .ci/run executes."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python usage block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    sol = namespace["sol"]
    assert sol.x.shape == namespace["x"].shape


def test_ci_reads_both_readme_commands():
    script = ROOT / ".ci" / "run"
    out = subprocess.run(
        ["bash", "-c", "source <(sed -n '/^readme_block()/,/^}/p' .ci/run); "
         "readme_block ci:tests; readme_block ci:main-job"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "python -m pytest" in out and "flowrestore demo" in out
    assert script.exists()
