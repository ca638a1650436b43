"""``python -m flowrestore``: the ``flowrestore`` command line (:func:`flowrestore.cli.main`)."""

import sys

from flowrestore.cli import main

if __name__ == "__main__":
    sys.exit(main())
