"""Photo-restoration demonstration: ``flowrestore demo`` (the default task ``all``).

Restores center crops of the held-out photos ``("astronaut", "camera", "coffee")`` — never used for
training — with the predictors shipped in :mod:`flowrestore.pretrained`, at several numbers of
function evaluations (NFE) and solvers, and prints one table per task: PSNR and SSIM against the
clean crop (mean over the photos), NFE, seconds per image, and the high-frequency energy (mean
squared Laplacian, :func:`flowrestore.metrics.high_frequency_energy`) relative to the clean crop's
("HF/clean": 1.0 is as sharp as the truth, lower is blurrier). Under each table a line compares
the one-evaluation estimate (the MMSE estimate ``F(y, 1)``/``Φ(y, 1)``: highest PSNR, blurry) with
the method's default solver at its most evaluations (sharper, at a small PSNR cost): the
perception–distortion trade-off. It writes ``table.md``, ``results.json`` and a figure (per task
and photo: degraded | one-step | the default solver at a few NFE | clean) to the output folder and
prints their paths.

What runs is decided and checked first (:func:`flowrestore.demo.settings.plan_demo`: the method
records' showcase runs, or ``--solver``/``--steps``); then :func:`run_plan`: one named step per
task (:func:`_run_task`) and one for the files (:func:`_write_outputs`). Noise (degradation noise
and Dirac's SDE) comes from generators seeded by ``--seed``, so the numbers are reproducible.
Everything runs on CPU in about a minute (192×192 crops; ``--quick`` uses 64×64 crops and fewer
settings) or on CUDA with ``--device cuda``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from flowrestore.demo.settings import (
    FIGURE_KEY,
    TABLE_HEAD,
    TASKS,
    DemoPlan,
    DemoTask,
    plan_demo,
)
from flowrestore.paths import write_atomic
from flowrestore.pretrained.scores import evaluate

__all__ = ["run", "run_plan", "TaskResult"]


@dataclass
class TaskResult:
    """One task's outcome: its ``rows`` (scores), the printed ``block`` (table and notes) and the
    figure ``columns`` (``(label, images, PSNR per image or None)``)."""

    task: DemoTask
    rows: list[dict]
    block: list[str]
    columns: list[tuple]


def _table(task: DemoTask, rows, crop, names) -> list[str]:
    lines = [
        f"### {task.name} ({task.model}): {len(names)} held-out photos "
        f"({', '.join(names)}), center crops {crop}×{crop}",
        "",
        "| solver | steps | t_end | output | NFE | PSNR (dB) | SSIM | HF/clean | s/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        te = "-" if r["solver"] in ("input", "phi") else (r["t_end"] or 0)
        lines.append(
            f"| {r['solver']} | {r['steps']} | {te} | {r['output']} | {r['nfe']} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['hf_ratio']:.2f} | "
            f"{r['seconds_per_image']:.3f} |"
        )
    return lines


def _default_rows(task: DemoTask, rows) -> list[dict]:
    """The rows of the method's default solver and output (else of the first solver run)."""
    m = task.spec.method
    ran = rows[1:]
    chosen = [r for r in ran if r["solver"] == m.default_solver and r["output"] == m.default_output]
    return chosen or [r for r in ran if r["solver"] == ran[0]["solver"]]


def _perception_distortion(task: DemoTask, rows) -> str | None:
    one = [r for r in rows[1:] if r["nfe"] == 1]
    many = [r for r in _default_rows(task, rows) if r["nfe"] > 1]
    if not one or not many:
        return None
    one, many = one[0], max(many, key=lambda r: r["nfe"])
    sharper = "sharper" if many["hf_ratio"] > one["hf_ratio"] else "NOT sharper"
    return (
        f"{task.spec.method.title} perception–distortion: 1 NFE (the MMSE estimate) PSNR "
        f"{one['psnr']:.2f} dB, HF/clean {one['hf_ratio']:.2f}; {many['solver']} "
        f"{many['steps']} steps ({many['nfe']} NFE) PSNR {many['psnr']:.2f} dB, HF/clean "
        f"{many['hf_ratio']:.2f} ({sharper}; "
        f"PSNR {many['psnr'] - one['psnr']:+.2f} dB)"
    )


def _columns(task: DemoTask, rows, clean) -> list[tuple]:
    """Figure columns: degraded | the 1-NFE estimate | default-solver rows (at most 3) | clean."""
    shown = _default_rows(task, rows)
    if len(shown) > 3:
        shown = [shown[0], shown[len(shown) // 2], shown[-1]]
    one = [r for r in rows[1:] if r["nfe"] == 1 and r not in shown][:1]
    cols = [("degraded", rows[0]["images"], rows[0]["psnr_per_image"])]
    for r in one + shown:
        label = f"{r['solver']} NFE {r['nfe']}" + (f" t_end {r['t_end']}" if r["t_end"] else "")
        cols.append((label, r["images"], r["psnr_per_image"]))
    cols.append(("clean", clean, None))
    return cols


def _run_task(task: DemoTask, clean, names, plan: DemoPlan, device) -> TaskResult:
    """Restore the crops with each of the task's runs; the table, notes and figure columns."""
    from flowrestore.pretrained import pretrained

    model = pretrained(task.model, device=device)
    rows = evaluate(model, clean, task.runs, seed=plan.seed, device=device, keep_images=True)
    notes = [_perception_distortion(task, rows)]
    explain = task.spec.method.explain
    notes.append(explain(task.spec) if explain is not None else None)
    block = _table(task, rows, plan.crop, names) + [""] + [n for n in notes if n] + [""]
    columns = _columns(task, rows, clean)
    for r in rows:
        r.pop("images", None)
    return TaskResult(task, rows, block, columns)


def _panel(img):
    """One figure panel: a ``(C, H, W)`` image clamped to ``[0, 1]``, as an ``(H, W, 3)`` array
    (colour) or ``(H, W)`` (grey, shown with a grey colour map)."""
    arr = img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return arr if arr.shape[-1] == 3 else arr[..., 0]


def _figure(results: list[TaskResult], path: Path, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = len(results) * len(names)
    ncols = max(len(r.columns) for r in results)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 * ncols, 2.1 * nrows), squeeze=False)
    for k, res in enumerate(results):
        for i, name in enumerate(names):
            row = axes[k * len(names) + i]
            for c, ax in enumerate(row):
                ax.axis("off")
                if c >= len(res.columns):
                    continue
                label, imgs, val = res.columns[c]
                ax.imshow(
                    _panel(imgs[i]),
                    cmap="gray",
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
                title = label if val is None else f"{label}\n{val[i]:.2f} dB"
                ax.set_title(f"{res.task.name}: {name}\n{title}" if c == 0 else title, fontsize=7)
    fig.tight_layout()
    # the text chunk marks the figure as the demo's own: a rerun may replace it, nothing else
    try:
        write_atomic(
            path,
            lambda f: fig.savefig(f, format="png", dpi=100, metadata={FIGURE_KEY: "restorations"}),
        )
    finally:
        plt.close(fig)


def _write_outputs(results, plan: DemoPlan, names, device, seconds) -> dict:
    """Write the figure, ``table.md`` and ``results.json``, each atomically (a failed write
    leaves the earlier file whole, so a rerun still knows it as the demo's own); their paths."""
    fig_path, table_path, json_path = (
        plan.out / "restorations.png",
        plan.out / "table.md",
        plan.out / "results.json",
    )
    _figure(results, fig_path, names)
    header = [
        f"{TABLE_HEAD} held-out photos, center crops {plan.crop}x{plan.crop}, device {device}",
        "",
        "PSNR/SSIM against the clean crop (mean over the photos); HF/clean = "
        "high-frequency energy relative to the clean crop (1 = as sharp as the truth).",
        "",
    ]
    lines = [line for r in results for line in r.block]
    table = "\n".join(header + lines + [f"total time {seconds:.1f} s", ""])
    write_atomic(table_path, lambda f: f.write(table.encode("utf-8")))
    payload = {
        "crop": plan.crop,
        "device": str(device),
        "images": names,
        "seconds": seconds,
        "tasks": {r.task.name: r.rows for r in results},
    }
    text = json.dumps(payload, indent=1)
    write_atomic(json_path, lambda f: f.write(text.encode("utf-8")))
    return {"table": table_path, "figure": fig_path, "json": json_path}


def run_plan(plan: DemoPlan, *, log=print) -> dict:
    """Run a checked :class:`DemoPlan`; returns ``{"rows": {task: rows}, "table": path, ...}``."""
    from flowrestore.pretrained import heldout_crops
    from flowrestore.runtime import resolve_device, set_threads

    device = resolve_device(plan.device)
    threads = set_threads(plan.threads, device)
    names, clean = heldout_crops(plan.crop)
    t_start = time.perf_counter()
    log(
        f"flowrestore demo: held-out photos {', '.join(names)} (never used for training), "
        f"center crops {plan.crop}x{plan.crop} to keep it fast; device {device}"
        + (f" ({threads} thread{'s' if threads > 1 else ''})" if device.type == "cpu" else "")
    )
    for note in plan.notes:
        log(note)
    results = []
    for task in plan.tasks:
        results.append(_run_task(task, clean, names, plan, device))
        log("\n".join(results[-1].block))
    seconds = time.perf_counter() - t_start
    paths = _write_outputs(results, plan, names, device, seconds)
    log(f"total time {seconds:.1f} s")
    log(f"table:  {paths['table']}")
    log(f"figure: {paths['figure']}")
    log(f"json:   {paths['json']}")
    return {"rows": {r.task.name: r.rows for r in results}, "seconds": seconds, **paths}


def run(
    *,
    tasks=TASKS,
    solvers=None,
    steps=None,
    device=None,
    out="flowrestore-demo",
    quick=False,
    crop=None,
    seed=0,
    threads=None,
    log=print,
) -> dict:
    """Check the options (:func:`~flowrestore.demo.settings.plan_demo`), then run the demo."""
    plan = plan_demo(
        tasks=tasks,
        solvers=solvers,
        steps=steps,
        device=device,
        out=out,
        crop=crop,
        quick=quick,
        seed=seed,
        threads=threads,
    )
    return run_plan(plan, log=log)
