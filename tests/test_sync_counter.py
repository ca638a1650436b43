"""The sync counter itself: it must see each kind of host synchronisation (else every
'0 syncs per step' test would pass vacuously)."""

import torch
from syncs import SyncCounter


def test_counter_sees_each_kind_of_host_read():
    x = torch.randn(6, generator=torch.Generator().manual_seed(0))
    cases = {
        "item": lambda: x[0].item(),
        "float": lambda: float(x.sum()),
        "bool": lambda: bool((x > 0).any()),
        "nonzero": lambda: (x > 0).nonzero(),
        "mask index": lambda: x[x > 0],
        "mask assign": lambda: x.clone().__setitem__(x < 0, 0.0),
        "unique": lambda: torch.unique(x),
    }
    for name, fn in cases.items():
        with SyncCounter() as sc:
            fn()
        assert sc.count >= 1, name


def test_counter_ignores_device_side_work():
    x = torch.randn(6, generator=torch.Generator().manual_seed(0))
    with SyncCounter() as sc:
        y = torch.where(x > 0, x, 2 * x).cumsum(0)
        y = y[torch.arange(3)] + y.abs().max()
        torch.isfinite(y).all()
    assert sc.count == 0, dict(sc.ops)
