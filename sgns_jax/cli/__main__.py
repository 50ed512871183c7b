"""``python -m sgns_jax.cli``: the ``sgns-jax`` command."""

import sys

from sgns_jax.cli import main

sys.exit(main())
