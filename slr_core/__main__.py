"""Entry point of `python -m slr_core`."""

import sys

from slr_core.cli import main

sys.exit(main())
