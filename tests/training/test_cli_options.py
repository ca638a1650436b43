"""The trainer's command line offers exactly the values its configuration accepts."""

import pytest

from flowrestore.errors import ConfigError
from flowrestore.training import TrainConfig
from flowrestore.training.cli import config_from_args


@pytest.mark.parametrize(("flag", "field", "good", "bad"), [
    ("--loss-p", "loss_p", (1, 2), (0, 3)),
    ("--channels", "channels", (1, 3), (2, 4)),
])  # fmt: skip
def test_choice_options_match_the_configuration(flag, field, good, bad, capsys):
    for v in good:
        cfg, _ = config_from_args(["--out", "x.ckpt", flag, str(v)])
        assert getattr(cfg, field) == v
        TrainConfig(**{field: v})  # the configuration takes it too
    for v in bad:
        with pytest.raises(SystemExit):
            config_from_args(["--out", "x.ckpt", flag, str(v)])
        assert "invalid choice" in capsys.readouterr().err
        with pytest.raises((ConfigError, ValueError)):
            TrainConfig(**{field: v})
