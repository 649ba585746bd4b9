"""``python -m hpo.report`` is ``hpo report`` (see ``hpo.cli``)."""

from __future__ import annotations

import sys

from hpo.cli import report_main

main = report_main

if __name__ == "__main__":
    sys.exit(main())
