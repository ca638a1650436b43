"""Fixtures shared by the test files at this level (each file opts in with ``pytestmark``)."""

import pytest
import torch


@pytest.fixture
def keep_threads():
    """The restore command sets torch's thread count; put it back after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One CPU thread: the machine is shared, and the U-Net runs several times slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
