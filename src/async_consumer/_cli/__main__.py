"""``python -m async_consumer._cli``: the command without its console entry point."""

import sys

from .main import console

sys.exit(console())
