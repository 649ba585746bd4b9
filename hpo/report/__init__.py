"""The report: ``hpo report --study fashion`` -> ``reports/<study>.html``. Modules in the order data flows:

defaults.py  the flags' defaults (light: the command line reads them for --help)
rows.py      trials flattened into rows, the top trials (Optuna only)
checks.py    the tuning-playbook checks, each a Flag that says what to change (Optuna only)
collect.py   study -> plain data: counts, rows, checks, importances, environment (no TensorFlow)
runs.py      what the report trains (the best trial with k seeds, references, transfer runs) and its cache
retrain.py   runs that plan, or tests the stored winner as trained; the only test-set reader
compare.py   mean ± sd and intervals, per-class metrics, confusion matrix, McNemar (no TensorFlow)
figures.py   plotly figures drawn from the data above, and Optuna's own search plots
markup.py    HTML building blocks: CSS, escaping, tables, badges
testset.py   the test-set sections: the winner retrained or as trained, its mistakes, the references
render.py    the whole page: the study's sections, then the test set's
build.py     the pipeline: open the study -> collect -> retrain -> compare -> draw -> render -> write
"""

from __future__ import annotations

import importlib
from typing import Any

# The submodules keep their names (``hpo.report.collect`` is the module, ``collect.collect`` its function);
# the two names below are imported on first use, so that ``hpo --help`` stays instant.
__all__ = ["StudyData", "build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        return importlib.import_module("hpo.report.build").build_report
    if name == "StudyData":
        return importlib.import_module("hpo.report.collect").StudyData
    raise AttributeError(f"module 'hpo.report' has no attribute {name!r}")
