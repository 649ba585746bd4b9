"""``python -m hpo.run`` is ``hpo run`` (see ``hpo.cli``)."""

from __future__ import annotations

import sys

from hpo.cli import resolve, run_main, run_parser

main = run_main
build_parser = run_parser
__all__ = ["build_parser", "main", "resolve"]

if __name__ == "__main__":
    sys.exit(main())
