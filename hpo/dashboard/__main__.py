"""``python -m hpo.dashboard`` is ``hpo dashboard``."""

from __future__ import annotations

import sys

from hpo.cli import dashboard_main

sys.exit(dashboard_main())
