"""A small run of ``benchmarks.analytic_start``: one exact diffusion instance at 3–4
evaluations. Given the model's estimate at the start (from warm-up noises that are not scored),
``N`` evaluations of ``IPNDM()`` are its ``N + 1`` evaluated steps, within 2 %; every row costs
the evaluations it is reported at (the runner checks the solve's own count)."""

from __future__ import annotations

import torch

from benchmarks import analytic_start as A


def test_small_run(monkeypatch):
    monkeypatch.setattr(A, "NFES", range(3, 5))
    torch.set_grad_enabled(False)
    try:
        problem, warm, training, score = next(A.problems("val"))
        problem.instances = problem.instances[:1]
        res = A.run_problem(problem, warm, training, score)
    finally:
        torch.set_grad_enabled(True)
    assert "DataIPNDM(start_estimate=training mean)" not in res  # no training set here
    given, plain = res["IPNDM(start_estimate=estimate)"], res["IPNDM()"]
    assert abs(given[3] / plain[4] - 1) < 0.02, (given, plain)
    assert given[3] < 0.6 * plain[3]
    table = A.report(problem, res)
    gains = [line.split(" |")[0] for line in table.splitlines() if line.startswith("| gain")]
    assert gains == ["| gain, IPNDM", "| gain, DataIPNDM", "| gain, UniPC"]
