"""Review: runtime helpers refuse what torch would fail on later, with typed errors."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from flowrestore.errors import ConfigError
from flowrestore.runtime import resolve_device, set_threads


@pytest.mark.parametrize("rank", ["3", "x", ""])
def test_default_device_checks_local_rank(monkeypatch, rank):
    # LOCAL_RANK=3 on a one-GPU machine gave cuda:3 unchecked (failing at the first .to);
    # LOCAL_RANK=x a bare RuntimeError from torch.device
    monkeypatch.setenv("LOCAL_RANK", rank)
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=1),
        pytest.raises(ConfigError, match="LOCAL_RANK|only 1 CUDA device"),
    ):
        resolve_device(None)


def test_default_device_takes_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
    ):
        assert resolve_device(None) == torch.device("cuda:1")


@pytest.mark.parametrize("threads", [-1, 0, 2.5, "2", True])
def test_set_threads_refuses_non_positive_ints(threads):
    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="threads"):
        set_threads(threads, "cpu")  # was a bare RuntimeError from torch (0: silently default)
    assert torch.get_num_threads() == before
    assert set_threads(before, "cpu") == before
