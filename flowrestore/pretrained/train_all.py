"""Re-train, export and score the shipped predictors.

``python -m flowrestore.pretrained.train_all`` [``--only NAME...``] [``--parallel 2``]. For each
model in :data:`MODELS` this runs the project's trainer with exactly the recorded arguments::

    python -m flowrestore.training.trainer <args> --out build/pretrained/<name>.ckpt

then (unless ``--no-export``) keeps only the EMA weights as a float32 state dict in
``flowrestore/pretrained/<name>.pt``, measures PSNR/SSIM on center crops of the held-out photos and
writes the entry of ``flowrestore/pretrained/registry.json``. Training runs one thread per model
(``--threads 1``); ``--parallel 2`` trains two models at once (one per CPU core). With
``--export-only`` nothing is trained: existing checkpoints are exported and scored; with
``--rescore`` the shipped weights are only scored again (after a change to the solvers or to the
spacing a model declares, which the held-out runs use; ``flowrestore pretrained`` prints these
scores, and ``tests/test_pretrained.py`` checks that they reproduce).

The InDI predictors use the velocity parametrisation ``F = x − t·v`` (their flows have a limit at
``t = 0``: ``fr.check_endpoint``) and a time embedding of scale 10 (smooth in ``t``). Measured on
the shared 2-core CPU machine under heavy load (several trainings and benchmarks at once):
``indi-deblur`` 3000 steps at 0.17 s/step (8.4 min); ``indi-sr4`` 6000 steps at 0.57 s/step, then
resumed to 9000 (``--resume``: bit-identical to an uninterrupted run) at 0.51 s/step, 82 min in all;
``dirac-deblur`` (unchanged) 25 min for 3000 steps at 0.50 s/step (0.10 s/step on an idle core).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from flowrestore.errors import ConfigError
from flowrestore.methods import ModelSpec
from flowrestore.paths import write_atomic
from flowrestore.pretrained import _write_registry_file
from flowrestore.training.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent

# name -> (description, trainer arguments). The weights in this folder were trained with exactly
# these arguments (plus --out and --checkpoint-every 500 --no-progress).
MODELS: dict[str, tuple[str, list[str]]] = {
    "indi-deblur": (
        "InDI, Gaussian deblurring (blur std 2 px, noise 0.01), velocity parametrisation",
        shlex.split(
            "--task deblur --task-param blur_sigma=2.0 --task-param noise=0.01 --method indi "
            "--steps 3000 --seed 0 --threads 1 --velocity --time-scale 10"
        ),
    ),
    "indi-sr4": (
        "InDI, 4x super-resolution (4x4 average pooling, bicubic upsampling back to full size), "
        "velocity parametrisation",
        shlex.split(
            "--task sr4 --task-param factor=4 --task-param 'upsample=\"bicubic\"' "
            "--task-param noise=0.0 --method indi --steps 9000 --seed 0 --threads 1 "
            "--velocity --time-scale 10"
        ),
    ),
    "dirac-deblur": (
        "Dirac, Gaussian deblurring: blur family std 2t px, noise sigma_t = 0.01^(1-t) 0.05^t",
        shlex.split(
            "--task deblur --task-param blur_sigma=2.0 --task-param noise=0.0 --method dirac "
            "--sigma-min 0.01 --sigma-max 0.05 --lookahead 1.0 --tdist power --tdist-param k=2 "
            "--steps 3000 --seed 0 --threads 1"
        ),
    ),
}

#: the trainer's module as run and recorded (``python -m flowrestore.training`` is the same
#: command line; the registry's commands name this one)
TRAINER_MODULE = "flowrestore.training.trainer"

# What the registry records as measured held-out scores (see
# flowrestore.pretrained.scores.evaluate).
EVAL_CROP = 192


def trainer_argv(name: str, out_dir: Path) -> list[str]:
    """The full trainer command line of one model."""
    _, args = MODELS[name]
    return [
        sys.executable,
        "-m",
        TRAINER_MODULE,
        *args,
        "--no-progress",
        "--checkpoint-every",
        "500",
        "--out",
        str(out_dir / f"{name}.ckpt"),
    ]


def command_text(name: str) -> str:
    """The recorded (portable) training command."""
    _, args = MODELS[name]
    return f"python -m {TRAINER_MODULE} " + shlex.join(
        [*args, "--out", f"build/pretrained/{name}.ckpt"]
    )


def _logged_seconds(log: Path) -> float | None:
    """Training wall time from the trainer's last complete JSON line (seconds_per_step * steps);
    ``None`` without one (a log cut short by a killed run is not an error: the weights are)."""
    if not log.exists():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and "seconds_per_step" in line:
            try:
                d = json.loads(line)
                return round(float(d["seconds_per_step"]) * int(d["steps"]), 1)
            except (ValueError, KeyError, TypeError):
                continue
    return None


def _prepare(name: str, ckpt_path: Path, *, seconds: float | None = None) -> tuple[dict, bytes]:
    """``(registry entry, weights file)`` of one trained model, scored; writes nothing. The
    weights file is the float32 EMA state dict as ``torch.save`` writes it; the entry records
    its SHA-256 (checked at every load).

    A checkpoint without EMA weights is refused (:class:`ConfigError`): the shipped weights are
    the EMA's, and the raw training weights would be shipped under that name.
    """
    from flowrestore.training.unet import UNet

    ck = load_checkpoint(ckpt_path)
    if not isinstance(ck.get("ema"), dict) or not isinstance(ck["ema"].get("shadow"), dict):
        raise ConfigError(
            f"export: checkpoint {str(ckpt_path)!r} of {name!r} holds no EMA weights (the shipped "
            "weights are the EMA's); train it with the recorded command"
        )
    if seconds is None:
        seconds = _logged_seconds(ckpt_path.with_suffix(".log"))
    cfg = ck["config"]
    state = {k: v.detach().to(torch.float32).clone() for k, v in ck["ema"]["shadow"].items()}
    model = UNet(**ck["unet_config"])
    model.load_state_dict(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = buffer.getvalue()
    entry = {
        "file": f"{name}.pt",
        "sha256": hashlib.sha256(weights).hexdigest(),
        "description": MODELS[name][0],
        "method": cfg["method"],
        "task": cfg["task"],
        "task_params": cfg["task_params"],
        "unet": ck["unet_config"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "train": {
            "command": command_text(name),
            "steps": int(ck["step"]),
            "wall_seconds": seconds,
            "final_loss": float(sum(ck["history"][-100:]) / max(len(ck["history"][-100:]), 1)),
            "config": cfg,
        },
    }
    spec = ModelSpec.from_train_config(cfg, name=name)
    entry.update({k: v for k, v in spec.metadata().items() if k not in ("name", "task_params")})
    model.requires_grad_(False).eval()
    model.metadata = entry
    entry["heldout"] = heldout_scores(model, spec)
    return entry, weights


def _write_weights(name: str, weights: bytes) -> None:
    """Write ``<name>.pt`` atomically (a full disk leaves the old weights in place)."""
    write_atomic(HERE / f"{name}.pt", lambda f: f.write(weights))


def export(name: str, ckpt_path: Path, *, seconds: float | None = None) -> dict:
    """Write ``<name>.pt`` (EMA weights) and return its registry entry, with held-out scores.

    The weights are written only once the entry is complete (scored), atomically.
    """
    entry, weights = _prepare(name, ckpt_path, seconds=seconds)
    _write_weights(name, weights)
    return entry


def heldout_scores(model, spec) -> dict:
    """The registry's ``"heldout"`` record of ``model``: its method's held-out runs
    (:attr:`flowrestore.methods.Showcase.heldout`) on the held-out crops, as the solvers and the
    model's declared spacings step them today."""
    from flowrestore.pretrained import heldout_crops
    from flowrestore.pretrained.scores import evaluate

    names, clean = heldout_crops(EVAL_CROP)
    rows = evaluate(model, clean, spec.method.showcase.heldout, seed=0)
    keys = ("solver", "steps", "t_end", "output", "nfe", "psnr", "ssim", "hf_ratio")
    return {
        "images": names,
        "crop": EVAL_CROP,
        "noise_seed": 0,
        "results": [{k: r[k] for k in keys} for r in rows],
    }


def rescore(name: str) -> dict:
    """The shipped ``name``'s registry entry with its held-out scores measured again (after a
    change to the solvers or to the spacing the model declares; the weights are unchanged)."""
    import flowrestore as fr
    from flowrestore.pretrained import model_spec

    entry = json.loads((HERE / "registry.json").read_text())["models"][name]
    model = fr.pretrained(name)
    entry["heldout"] = heldout_scores(model, model_spec(model))
    return entry


def write_registry(entries: dict) -> None:
    """Merge entries into ``registry.json`` (written atomically: a failed write leaves it whole)."""
    path = HERE / "registry.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("format", "flowrestore-pretrained/1")
    data.setdefault("models", {}).update(entries)
    data["models"] = dict(sorted(data["models"].items()))
    _write_registry_file(path, data)


def _positive(text: str) -> int:
    """``--parallel``: an integer >= 1 (argparse type)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _train(names: list[str], out: Path, parallel: int) -> tuple[int, dict[str, float]]:
    """Run the trainers (``parallel`` at once); ``(exit code, seconds per model)``. When one
    fails, the others still running are stopped (they would train on for nothing)."""
    seconds: dict[str, float] = {}
    pending, running = list(names), {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name = pending.pop(0)
                cmd = trainer_argv(name, out)
                print("+", shlex.join(cmd), flush=True)
                with open(out / f"{name}.log", "w") as log:  # the child keeps its own handle
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                running[name] = (proc, time.perf_counter())
            for name, (proc, t0) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    if proc.returncode:
                        print(f"{name}: trainer failed with exit code {proc.returncode}")
                        return proc.returncode, seconds
                    seconds[name] = time.perf_counter() - t0
            if running:
                time.sleep(1.0)
    finally:
        for proc, _ in running.values():  # a failure or Ctrl-C: stop the other trainers
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
    return 0, seconds


def main(argv=None) -> int:
    """Train (unless ``--export-only``) and export the shipped predictors."""
    p = argparse.ArgumentParser(
        prog="python -m flowrestore.pretrained.train_all", description=__doc__.splitlines()[0]
    )
    p.add_argument("--only", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    p.add_argument("--out-dir", default="build/pretrained", help="training checkpoints")
    p.add_argument("--parallel", type=_positive, default=1, help="models trained at once")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--export-only", action="store_true")
    mode.add_argument("--no-export", action="store_true")
    mode.add_argument(
        "--rescore",
        action="store_true",
        help="measure the shipped predictors' held-out scores again (no training, no export)",
    )
    a = p.parse_args(argv)
    if len(set(a.only)) != len(a.only):  # two trainers would write the same checkpoint
        p.error(f"--only names a model twice: {a.only}")
    if a.rescore:
        entries = {name: rescore(name) for name in a.only}
        for name, entry in entries.items():
            print(name, json.dumps(entry["heldout"]["results"]))
        write_registry(entries)
        return 0
    out = Path(a.out_dir)
    if out.exists() and not out.is_dir():
        p.error(f"--out-dir {str(out)!r} is an existing file, not a folder")
    seconds: dict[str, float] = {}
    if not a.export_only:
        out.mkdir(parents=True, exist_ok=True)
        code, seconds = _train(a.only, out, a.parallel)
        if code:
            return code
    if a.no_export:
        return 0
    # every model is scored before any file is written: a failure leaves weights and registry
    # as they were, never new weights beside the old scores
    prepared = {
        name: _prepare(name, out / f"{name}.ckpt", seconds=seconds.get(name)) for name in a.only
    }
    for name, (entry, weights) in prepared.items():
        _write_weights(name, weights)
        print(name, json.dumps(entry["heldout"]["results"]))
    write_registry({name: entry for name, (entry, _) in prepared.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
