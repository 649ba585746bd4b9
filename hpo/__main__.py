"""``python -m hpo`` is ``python -m hpo.run``."""

from __future__ import annotations

import sys

from hpo.run import main

sys.exit(main())
