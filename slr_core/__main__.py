"""Entry point of `python -m slr_core`."""

import sys

from .cli import main

sys.exit(main())
