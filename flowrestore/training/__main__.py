"""``python -m flowrestore.training``: train a predictor (see :mod:`flowrestore.training.cli`)."""

from flowrestore.training.cli import main

raise SystemExit(main())
