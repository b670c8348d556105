"""Allows `python -m gpu_runbook`, for hosts where the console script is not on PATH."""

import sys

from gpu_runbook.cli import main

sys.exit(main())
