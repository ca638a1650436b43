"""FlowMatchingFlow's dynamic shift from numpy numbers (review finding)."""

import math

import numpy as np
import pytest

from flowrestore.flows.flow_matching import dynamic_shift

CONFIG = {"use_dynamic_shifting": True, "time_shift_type": "exponential"}


@pytest.mark.parametrize("mu", [np.float32(0.5), np.float16(0.5), np.int64(1)])
def test_numpy_mu_is_a_number(mu):
    # np.float32(0.5) was refused: "mu must be a finite number"
    assert dynamic_shift(CONFIG, mu=mu) == pytest.approx(math.exp(float(mu)))


def test_numpy_image_seq_len_is_an_int():
    # np.int64(1024) (e.g. from a numpy shape product) was refused: "image_seq_len must be an int"
    assert dynamic_shift(CONFIG, image_seq_len=np.int64(1024)) == dynamic_shift(
        CONFIG, image_seq_len=1024
    )


def test_non_finite_or_non_number_mu_still_refused():
    from flowrestore.errors import ConfigError

    for mu in (np.float32("nan"), "0.5", True):
        with pytest.raises(ConfigError, match="mu"):
            dynamic_shift(CONFIG, mu=mu)
