"""``python -m attune``: the ``attune`` command."""

import sys

from attune.cli import main

sys.exit(main())
