"""The words of ``flowrestore restore --help``: what the command does and what each model expects.

Importing this module does not import torch, so ``--help`` answers at once.
"""

from __future__ import annotations

import textwrap

from flowrestore.methods import METHODS
from flowrestore.pretrained import TASK_MODELS, list_pretrained, model_spec, pretrained_info

__all__ = ["DESCRIPTION", "models_help", "solvers_help", "expected_degradation"]

DESCRIPTION = """\
Restore image files with a shipped predictor (--task) or your own trainer checkpoint.

Inputs: files in any format Pillow reads, and folders (their .png .jpg .jpeg .bmp .tif .tiff
.webp .gif files, not recursive). A file given several times (relative, absolute, ../ paths) is
restored once.

Outputs: OUTDIR/<stem>.png for a PNG input and OUTDIR/<stem>_<ext>.png otherwise (a.jpg ->
a_jpg.png), the same name in every run. Existing outputs are kept unless --overwrite, which
replaces only earlier outputs of flowrestore restore: any other file at an output name (or a
symbolic link) is never replaced; its input is skipped with a line naming it. Two inputs
that would get one name (a.png in two folders; names differing only in case count as one) are
reported as failed; restore them into different folders. The output folder is created and
checked for writing before anything runs. Outputs are marked as this tool's own (a PNG text
chunk), so restoring a folder into itself can be run again: its earlier outputs are skipped, not
restored a second time.

Files as they are: the EXIF orientation is applied (the output is upright, its EXIF orientation
reset to 1), the ICC profile and the EXIF of JPEG, PNG and WebP files are kept (a TIFF's tags
are not), 16-bit inputs give 16-bit PNGs, the value range comes from the file's mode (8-bit /255,
16-bit /65535), alpha is kept unchanged (resized for sr4), grey stays grey, palette images become
RGB(A), CMYK becomes RGB (through its ICC profile when present). Of an animation or a multi-page
file only the first frame is restored, with a note saying so.

Large images are restored in overlapping tiles (size from the model's receptive field and the
--memory budget; --tile 0 restores the whole image at once); with tiles of 256 px or more the
result matches whole-image restoration within 1e-4 away from tile seams and within 1/255 at the
seams; smaller tiles (--tile, or a small --memory budget) differ more (sr4, 112-px tiles, 10
steps: 1.9e-4 away from seams, 1.8/255 at them). Before a long job an
estimate of the time and peak memory is printed; the progress bar counts tile steps.

sr4: the input is the low-resolution image; it is upsampled 4x (bicubic, as in training) and
restored (--no-upsample for inputs already at the target size).

Failures: an unreadable file is reported once (FAILED <path>: <reason>) and skipped; the exit code
is 0 when no file failed (each was restored, or skipped with a line saying why: its output
exists, or another file has its name), 1 when a file failed, 2 for a usage error. The summary
line counts the skipped files by reason.

Several processes: under torchrun (RANK/WORLD_SIZE set) each process takes every WORLD_SIZE-th
file of the sorted list, starting at its RANK; on CUDA each process uses cuda:LOCAL_RANK.
Stochastic solvers (Dirac's em) draw each file's noise from --seed and the file's content (each
tile's from that and the tile's index), so a file restores the same alone or in a folder, in any
order, batch or number of processes (batched images agree up to the rounding of batched kernels,
below 1e-5).
"""


def expected_degradation(meta) -> str:
    """In words: the input a predictor was trained on (with the noise it expects), and what it
    does to other inputs (``meta``: a registry entry or a predictor with ``.metadata``)."""
    return model_spec(meta).expects()


def models_help() -> str:
    """One paragraph per shipped model: its task name and the degradation it expects."""
    by_model = {v: k for k, v in TASK_MODELS.items()}
    lines = ["What each model expects (other inputs give poor or harmful results):"]
    for name in list_pretrained():
        task = by_model.get(name, name)
        label = task if task == name else f"{task} ({name})"
        text = f"--task {label}: {expected_degradation(pretrained_info(name))}."
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def solvers_help() -> str:
    """``--solver``'s help: each method's solver names, default first."""
    parts = [
        f"{', '.join(m.solver_names())} ({m.title} models; default {m.default_solver})"
        for m in METHODS.values()
    ]
    return "; ".join(parts)
