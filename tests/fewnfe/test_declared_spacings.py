"""Issue 16: an InDI predictor declares the grid spacing of its solvers without fitted grids
(``InDIFlow(spacings={solver class: spacing})``; the shipped predictors declare a
``StartRefined`` per solver, chosen by ``python -m benchmarks.indi_spacing --split val``)."""

from __future__ import annotations

import functools

import pytest
import torch

import flowrestore as fr
from flowrestore.errors import ArgumentTypeError, ConfigError
from flowrestore.integrate.endpoint import default_spacing
from flowrestore.oracles import GaussianOracle

SR3 = fr.StartRefined(rho=3.0, closing_pair=False)


def _flow(**kwargs):
    orc = GaussianOracle(mean=torch.zeros(4, dtype=torch.float64), std=0.5, noise_std=0.3)
    return fr.InDIFlow(orc.posterior_mean, **kwargs)


def _laid(flow, solver, n):
    return default_spacing(flow, solver, 0.0)(n, 1.0, 0.0)


def _start_refined(n, rho):
    """``t_k = 1 − (k/n)^ρ`` (closed form)."""
    k = torch.arange(n + 1, dtype=torch.float64)
    return 1.0 - (k / n) ** rho


@pytest.mark.parametrize("n", [3, 6, 10])
def test_a_declared_spacing_is_laid_for_exactly_that_solver_class(n):
    flow, plain = _flow(spacings={fr.DataIPNDM: SR3, fr.Euler: SR3}), _flow()
    for solver in (fr.DataIPNDM(), fr.Euler()):
        torch.testing.assert_close(_laid(flow, solver, n), _start_refined(n, 3.0))
    # a subclass' parent, another solver: what they got before
    for other in (fr.IPNDM(), fr.SemiLinearMultistep(), fr.Midpoint()):
        assert torch.equal(_laid(flow, other, n), _laid(plain, other, n))
    # and a subclass of a declared class (DataIPNDM is an IPNDM)
    parent = _flow(spacings={fr.IPNDM: SR3})
    assert torch.equal(_laid(parent, fr.DataIPNDM(), n), _laid(plain, fr.DataIPNDM(), n))


def test_the_declared_spacing_keeps_the_loops_landing_rules():
    """Heun lands by the denoising step: on a declared spacing with ``N^{-1}`` last interval the
    loop refines the end (``EndRefined``, ρ = 3/2), so its grid is not the declared one, but it
    starts like it and ends finer."""
    flow = _flow(spacings={fr.Heun: SR3})
    grid, declared = _laid(flow, fr.Heun(), 6), _start_refined(6, 3.0)
    assert not torch.allclose(grid, declared)
    assert grid[-2] < declared[-2]


def test_fitted_grids_come_first_and_fall_back_on_the_declared_spacing():
    solver = fr.SemiLinearMultistep()
    grids = fr.FittedGrids(solver=repr(solver), times={3: (1.0, 0.9, 0.5, 0.0)})
    flow = _flow(grids=grids, spacings={fr.SemiLinearMultistep: SR3})
    assert torch.equal(
        _laid(flow, solver, 3), torch.tensor((1.0, 0.9, 0.5, 0.0), dtype=torch.float64)
    )
    torch.testing.assert_close(_laid(flow, solver, 5), _start_refined(5, 3.0))


def test_an_explicit_spacing_wins_over_the_declared_one():
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = _flow(spacings={fr.DataIPNDM: SR3})
    explicit = fr.solve(flow, fr.DataIPNDM(), x, steps=4, spacing=fr.Uniform())
    plain = fr.solve(_flow(), fr.DataIPNDM(), x, steps=4)
    declared = fr.solve(flow, fr.DataIPNDM(), x, steps=4)
    torch.testing.assert_close(explicit.x, plain.x, rtol=0, atol=0)
    assert not torch.allclose(declared.x, plain.x)


@pytest.mark.parametrize(
    "spacings, match",
    [
        ([fr.Euler], "spacings must be a dict"),
        ({"Euler": SR3}, "keys must be solver classes.*'Euler'"),
        ({fr.Euler: 3.0}, r"spacings\[Euler\] must be a Spacing.*3\.0"),
    ],
)
def test_wrong_spacings_are_refused_with_their_value(spacings, match):
    with pytest.raises(ArgumentTypeError, match=match):
        _flow(spacings=spacings)


SHIPPED_SOLVERS = (
    fr.Euler,
    fr.Midpoint,
    fr.Heun,
    fr.RK4,
    fr.IPNDM,
    fr.DataIPNDM,
    fr.Bosh3,
    fr.Dopri5,
)
#: declared ``fr.Unrefined``: laid exactly, without the end rules of the loop
UNREFINED = (fr.Midpoint, fr.Heun, fr.RK4, fr.Bosh3, fr.Dopri5)


def _registry_record(name):
    import json
    from importlib import resources

    path = resources.files("flowrestore.pretrained").joinpath("registry.json")
    return json.loads(path.read_text())["models"][name]["spacings"]


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_a_shipped_predictor_lays_the_spacing_its_registry_names_for_each_solver(name):
    """Each of the eight solvers without fitted grids gets the ``StartRefined`` its registry
    record names (chosen per solver by ``python -m benchmarks.indi_spacing --split val --write``,
    for the embedded pairs by ``benchmarks.indi_spacing_pairs``), laid as ``t_k = 1 − (k/N)^ρ``:
    for Heun, RK4, Midpoint, Bosh3 and Dopri5 declared ``fr.Unrefined``, since the loop's end
    rules would take steps from the start, where the predictor changes fastest."""
    from flowrestore.pretrained import flow_for, pretrained

    record = _registry_record(name)["per_solver"]
    flow = flow_for(pretrained(name))
    assert set(flow.spacings) == set(SHIPPED_SOLVERS)
    assert set(record) == {cls.__name__ for cls in SHIPPED_SOLVERS}
    for cls in SHIPPED_SOLVERS:
        spec = record[cls.__name__]
        if cls in UNREFINED:
            assert isinstance(flow.spacings[cls], fr.Unrefined), (cls, spec)
        ((kind, params),) = spec.get("Unrefined", spec).items()
        assert kind == "StartRefined" and params["closing_pair"] is False
        for n in (3, 4, 7):
            torch.testing.assert_close(_laid(flow, cls(), n), _start_refined(n, params["rho"]))
    # SemiLinearMultistep keeps its fitted grids and its own default elsewhere
    assert fr.SemiLinearMultistep not in flow.spacings
    assert flow_for(pretrained(name), spacings=None).spacings == {}


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_the_declared_spacing_beats_the_loops_rule_on_a_photo_that_chose_nothing(name):
    """A crop of a photo that neither trained nor chose the spacing (scikit-image's
    ``stereo_motorcycle``, right view; the benchmark's test split scores the left one): every
    solver the shipped predictor declares the spacing for lands closer to a 200-evaluation
    reference on it than on the loop's rule without a declaration, at 6–9 evaluations."""
    import skimage.data

    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    im = torch.from_numpy(skimage.data.stereo_motorcycle()[1][200:248, 300:348]).float() / 255.0
    clean = im.permute(2, 0, 1)[None].contiguous()
    model = pretrained(name)
    y = degrade_for(model, clean, generator=torch.Generator().manual_seed(0))
    declared, plain = flow_for(model), flow_for(model, spacings=None)
    steps = {fr.Euler: 6, fr.Midpoint: 3, fr.Heun: 4, fr.RK4: 3, fr.IPNDM: 6, fr.DataIPNDM: 6}
    steps.update({fr.Bosh3: 3, fr.Dopri5: 2})  # 8 evaluations each
    with torch.no_grad():
        ref = fr.solve(plain, fr.RK4(), y, steps=50, spacing=fr.Power(2.0)).x.clamp(0, 1)
        gains = {}
        for cls, n in steps.items():
            mine = fr.solve(declared, cls(), y, steps=n).x.clamp(0, 1)
            base = fr.solve(plain, cls(), y, steps=n).x.clamp(0, 1)
            gains[cls.__name__] = float(fr.metrics.psnr(mine, ref) - fr.metrics.psnr(base, ref))
    assert all(g > 1.0 for g in gains.values()), gains


@pytest.mark.parametrize("cls", [fr.Heun, fr.RK4, fr.Midpoint, fr.Dopri5])
@pytest.mark.parametrize("n", [2, 3, 6, 10])
def test_an_unrefined_declaration_is_laid_exactly_as_given(cls, n):
    """``fr.Unrefined(spacing)``: none of the loop's end rules — the denoising landing's
    ``EndRefined`` (Heun, RK4, Dopri5) or Midpoint's ``EulerMatchedEnd`` — is applied on it;
    the same spacing declared plainly is refined at its end."""
    exact = _laid(_flow(spacings={cls: fr.Unrefined(SR3)}), cls(), n)
    torch.testing.assert_close(exact, _start_refined(n, 3.0), rtol=0, atol=1e-15)
    refined = _laid(_flow(spacings={cls: SR3}), cls(), n)
    assert refined[-2] < exact[-2]


def test_unrefined_keeps_its_base_law_and_refuses_what_is_not_a_spacing():
    sp = fr.Unrefined(fr.Power(rho=2.0))
    assert sp.end_exponent == 2.0 and sp.shape_for(5, 1.0, 0.0) == fr.Power(rho=2.0)
    torch.testing.assert_close(sp(4, 1.0, 0.0), fr.Power(rho=2.0)(4, 1.0, 0.0), rtol=0, atol=0)
    for bad in ("StartRefined", None, fr.Unrefined(SR3)):
        with pytest.raises(ConfigError, match="base must be a Spacing"):
            fr.Unrefined(bad)


def test_a_registry_entry_may_declare_an_unrefined_spacing():
    from flowrestore.methods.indi import _declared_spacings

    sr = {"StartRefined": {"rho": 3.0, "closing_pair": False}}
    entry = {"spacings": {"solvers": ["Heun", "RK4"], "spacing": {"Unrefined": sr}}}
    assert _declared_spacings(entry) == {fr.Heun: fr.Unrefined(SR3), fr.RK4: fr.Unrefined(SR3)}
    for spec, match in (
        ({"Karras": {}}, "needs one spacing of"),
        ({"Unrefined": {"Unrefined": sr}}, "base must be a Spacing"),
        ({"Unrefined": {"Bogus": {}}}, "needs one spacing of"),
    ):
        with pytest.raises(ConfigError, match=match):
            _declared_spacings({"spacings": {"solvers": ["Heun"], "spacing": spec}})
    with pytest.raises(ConfigError, match="unknown solver 'Nope'"):
        _declared_spacings({"spacings": {"solvers": ["Nope"], "spacing": sr}})


@functools.cache
def _gaps_to_euler(name):
    """On the crop above (stereo_motorcycle's right view), each Runge–Kutta solver's PSNR to the
    reference minus Euler's at the same evaluations, each on the spacing the shipped predictor
    declares for it: ``{(solver name, steps): dB}``."""
    import skimage.data

    from flowrestore.pretrained import degrade_for, flow_for, pretrained

    im = torch.from_numpy(skimage.data.stereo_motorcycle()[1][200:248, 300:348]).float() / 255.0
    clean = im.permute(2, 0, 1)[None].contiguous()
    model = pretrained(name)
    y = degrade_for(model, clean, generator=torch.Generator().manual_seed(0))
    flow = flow_for(model)
    gaps = {}
    with torch.no_grad():
        plain = flow_for(model, spacings=None)
        ref = fr.solve(plain, fr.RK4(), y, steps=50, spacing=fr.Power(2.0)).x.clamp(0, 1)
        for cls, counts in (
            (fr.Midpoint, (2, 3, 4, 5)),
            (fr.Heun, (2, 3, 4, 5)),
            (fr.RK4, (2, 3)),
            (fr.Bosh3, (3, 4)),
            (fr.Dopri5, (2, 3)),
        ):
            for n in counts:
                sol = fr.solve(flow, cls(), y, steps=n)
                euler = fr.solve(flow, fr.Euler(), y, steps=int(sol.stats.nfe.max())).x
                mine = fr.metrics.psnr(sol.x.clamp(0, 1), ref)
                gaps[(cls.__name__, n)] = float(mine - fr.metrics.psnr(euler.clamp(0, 1), ref))
    return gaps


#: Heun at 3 and 4 steps (5 and 7 evaluations) on sr4: behind Euler on every candidate spacing
#: of the validation photos (``benchmarks.indi_spacing``; test split −0.18 and −0.81 dB)
HEUN_BEHIND = {"indi-sr4": {("Heun", 3), ("Heun", 4)}}


@pytest.mark.parametrize("name", ["indi-deblur", "indi-sr4"])
def test_the_shipped_runge_kutta_solvers_keep_up_with_euler_on_a_photo_that_chose_nothing(name):
    """Midpoint, Heun and RK4 at 2–5 steps (RK4 2–3), Bosh3 at 3–4 and Dopri5 at 2–3 on the
    shipped predictors' declaration, laid exactly, land at least as close to the reference as
    Euler with the same evaluations on its own declaration (but for :data:`HEUN_BEHIND`). With
    the loop's end rules on the same spacings RK4 fell 6 dB behind it on sr4; without a
    declaration, on the loop's ``Power(rho = order/2)``, Bosh3 and Dopri5 fell 14–16 dB behind at
    10 steps on the validation crops (``benchmarks.indi_spacing_pairs``). Bosh3 with 2 steps (5
    evaluations, outside issue 16's ``N ≥ 3``) is 0.11 dB behind on sr4 here."""
    gaps = _gaps_to_euler(name)
    kept = {k: g for k, g in gaps.items() if k not in HEUN_BEHIND.get(name, ())}
    assert all(g >= 0.0 for g in kept.values()), kept


@pytest.mark.xfail(strict=True, reason="the learned sr4 field is stiff near t = 1 (RESULTS)")
def test_heun_keeps_up_with_euler_at_five_and_seven_evaluations_on_sr4():
    gaps = _gaps_to_euler("indi-sr4")
    assert all(gaps[k] >= 0.0 for k in HEUN_BEHIND["indi-sr4"]), gaps
