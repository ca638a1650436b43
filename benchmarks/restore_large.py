"""Restoring large photos (issue 12): peak memory, time per megapixel, tiled vs whole image.

    python benchmarks/restore_large.py                      # all cases, results in benchmarks/out
    python benchmarks/restore_large.py --cases crop deblur12 --out /tmp/bench

Cases (each restoration runs in its own process, under /usr/bin/time -v when it exists, so the
peak resident memory of the whole command is measured; the process's own ru_maxrss is recorded
too):

* crop      a 256x256 crop of the 12-MP photo, --task deblur, default solver (multistep, 10 steps),
            three runs in one process
* deblur12  the 4000x3000 JPEG (12 MP), --task deblur, default solver; goals: peak < 1.5 GB, and
            time per megapixel within 1.3x of the crop's. The crop is restored 3 times just before
            and 3 times just after the photo in the same process, and the ratio uses their median
            (wall and CPU time), so that both see the same load on a shared machine
* sr4       a 1000x1000 image to 4000x4000 (16 MP), --task sr4, default solver; goal: < 2 GB
* equiv     tiled vs whole-image restoration of 512x512 crops (deblur and sr4, Heun 10 steps,
            256-px tiles with the default overlap): the largest difference away from seams (where
            one tile has weight 1) and anywhere

The photo is scikit-image's coffee picture resized to 4000x3000 and blurred like the deblur model's
training data (Gaussian, std 2 px). Writes DIR/restore_large.md and DIR/restore_large.json.
Takes about half an hour on one CPU core; run it with `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("crop", "deblur12", "sr4", "equiv")
ROOT = Path(__file__).resolve().parents[1]


def make_inputs(work: Path) -> dict[str, Path]:
    """The 12-MP blurred JPEG, its 256x256 crop and a 1-MP low-resolution image."""
    import numpy as np
    from PIL import Image, ImageFilter
    from skimage import data

    paths = {
        "deblur12": work / "photo12mp.jpg",
        "crop": work / "crop256.png",
        "sr4": work / "small1mp.png",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    photo = Image.fromarray(np.ascontiguousarray(data.coffee()))
    big = photo.resize((4000, 3000), Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(2))
    big.save(paths["deblur12"], quality=92)
    big.crop((1872, 1372, 2128, 1628)).save(paths["crop"])
    photo.resize((1000, 1000), Image.Resampling.BOX).save(paths["sr4"])
    return paths


#: the solver of the large-photo cases: restore's default ("heun" reproduces the first recorded run)
SOLVER = "multistep"


def _timed_restore(model, path: Path, out: Path) -> tuple[float, float, tuple[int, int]]:
    """Restore one file with the defaults: (wall seconds, CPU seconds, output size)."""
    from PIL import Image

    from flowrestore.restore import restore_files

    w0, c0 = time.perf_counter(), time.process_time()
    report = restore_files(
        [path],
        out,
        model=model,
        solver=SOLVER,
        steps=10,
        device="cpu",
        overwrite=True,
        progress=False,
        log=print,
    )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert report.restored, report.failed
    with Image.open(report.restored[0][1]) as im:
        return wall, cpu, im.size


def child(case: str, work: Path) -> None:
    """Run one case in this process and print one ``RESULT {json}`` line.

    ``deblur12`` also restores the 256x256 crop three times just before and three times just
    after the large photo, so that the per-megapixel comparison sees the same machine load.
    """
    import resource

    import torch

    from flowrestore.restore import load_model, set_threads

    set_threads(None, "cpu")
    paths = make_inputs(work)
    task = "sr4" if case == "sr4" else "deblur"
    model = load_model(task, device="cpu")
    out = work / f"out_{case}"
    crop = []
    if case == "deblur12":
        crop += [_timed_restore(model, paths["crop"], work / "out_crop") for _ in range(3)]
    runs = [_timed_restore(model, paths[case], out) for _ in range(3 if case == "crop" else 1)]
    if case == "deblur12":
        crop += [_timed_restore(model, paths["crop"], work / "out_crop") for _ in range(3)]
    w, h = runs[0][2]
    result = {
        "case": case,
        "task": task,
        "solver": f"{SOLVER}, 10 steps",
        "size": [w, h],
        "out_mpx": w * h / 1e6,
        "seconds": [r[0] for r in runs],
        "cpu_seconds": [r[1] for r in runs],
        "median_seconds": statistics.median(r[0] for r in runs),
        "median_cpu_seconds": statistics.median(r[1] for r in runs),
        "threads": torch.get_num_threads(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if crop:
        result["crop_seconds"] = [r[0] for r in crop]
        result["crop_cpu_seconds"] = [r[1] for r in crop]
    print("RESULT " + json.dumps(result), flush=True)


def equivalence() -> list[dict]:
    """Tiled vs whole-image restoration on 512x512 crops of held-out photos."""
    import torch
    from skimage import data

    import flowrestore as fr
    from flowrestore.pretrained import degrade_for, flow_for, pretrained
    from flowrestore.restore import set_threads
    from flowrestore.tiling import plan_tiles, restore_tiled

    set_threads(None, "cpu")
    rows = []
    x = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float()[None] / 255
    for name in ("indi-deblur", "indi-sr4"):
        model = pretrained(name)
        y = degrade_for(model, x, generator=torch.Generator().manual_seed(0))
        flow = flow_for(model)
        whole = fr.solve(flow, fr.Heun(), y, steps=10).x[0]
        plan = plan_tiles(512, 512, model=model, tile=256)
        tiled = restore_tiled(flow, fr.Heun(), y[0], steps=10, plan=plan)
        err = (tiled - whole).abs().amax(0)
        rw, cw = plan.weights()
        one = torch.zeros(512, 512, dtype=torch.bool)
        for i, (t, b) in enumerate(plan.rows):
            for j, (c, r) in enumerate(plan.cols):
                one[t:b, c:r] |= (rw[i][:, None] * cw[j][None, :]) == 1
        rows.append(
            {
                "model": name,
                "tiles": plan.count,
                "overlap": plan.overlap,
                "away_from_seams": float(err[one].max()),
                "anywhere": float(err.max()),
                "fraction_away": float(one.float().mean()),
            }
        )
    return rows


def run_case(case: str, work: Path) -> dict:
    """Run ``child(case)`` in a fresh process; add the peak RSS that /usr/bin/time reports."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, "--work", str(work)]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer:
        cmd = [timer, "-v", *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    result["peak_rss_mb"] = int(m.group(1)) / 1024 if m else result["ru_maxrss_mb"]
    result["process_seconds"] = wall
    result["estimate"] = [ln for ln in proc.stdout.splitlines() if ln.startswith("estimate:")]
    return result


def main(argv=None) -> int:
    """Run the cases and write the report."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--out", default="benchmarks/out", help="output folder (default benchmarks/out)")
    p.add_argument("--work", default=None, help="folder for the generated inputs and outputs")
    p.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, Path(a.work))
        return 0
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import machine

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="restore_large_"))
    work.mkdir(parents=True, exist_ok=True)
    make_inputs(work)
    results: dict = {
        "machine": machine(),
        "run": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    for case in a.cases:
        print(f"running {case} ...", flush=True)
        results[case] = equivalence() if case == "equiv" else run_case(case, work)
        print(json.dumps(results[case]), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "restore_large.json").write_text(json.dumps(results, indent=1))
    (out / "restore_large.md").write_text(report(results))
    print(report(results))
    return 0


def report(r: dict) -> str:
    """Markdown summary of the cases that ran."""
    lines = [
        "# Restoring large photos",
        "",
        f"Machine: {r['machine']}",
        "",
        f"Run: {r['run']}; solver: restore's {SOLVER!r}, 10 steps",
        "",
        "| case | output | peak RSS | wall time | CPU time | wall s / output Mpx |",
        "|---|---|---|---|---|---|",
    ]
    for case in ("crop", "deblur12", "sr4"):
        if case in r:
            c = r[case]
            lines.append(
                f"| {case} | {c['size'][0]}x{c['size'][1]} | {c['peak_rss_mb']:.0f} MB | "
                f"{c['median_seconds']:.1f} s | {c.get('median_cpu_seconds', 0):.1f} s | "
                f"{c['median_seconds'] / c['out_mpx']:.1f} |"
            )
    big = r.get("deblur12", {})
    if "crop_seconds" in big:
        crop_mpx = 256 * 256 / 1e6
        for label, key, ckey in (
            ("wall", "median_seconds", "crop_seconds"),
            ("CPU", "median_cpu_seconds", "crop_cpu_seconds"),
        ):
            per_crop = statistics.median(big[ckey]) / crop_mpx
            ratio = big[key] / big["out_mpx"] / per_crop
            lines.append(
                f"\n12 MP {label} time per megapixel / 256x256 crop's (crop restored 3x "
                f"before and 3x after, median): {ratio:.2f}"
            )
    for e in r.get("equiv", []):
        lines.append(
            f"\n{e['model']}: {e['tiles']} tiles, overlap {e['overlap']} px: max |tiled - "
            f"whole| {e['away_from_seams']:.1e} away from seams "
            f"({100 * e['fraction_away']:.0f} % of pixels), {e['anywhere']:.1e} anywhere"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
