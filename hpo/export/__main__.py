"""``python -m hpo.export`` is ``hpo export``."""

from __future__ import annotations

import sys

from hpo.cli import export_main

sys.exit(export_main())
