"""The report: ``hpo report --study fashion`` -> ``reports/<study>.html``.

collect.py   study -> plain data: counts, top trials, the tuning-playbook checks (no TensorFlow)
retrain.py   the best trial with k seeds, the references, the transfer runs; the only test-set reader;
             results cached beside the report
compare.py   mean ± sd and intervals, per-class metrics, confusion matrix, McNemar (no TensorFlow)
figures.py   plotly figures drawn from the data above, and Optuna's own search plots
render.py    one self-contained HTML page, every user string escaped
build.py     the pipeline: open the study -> collect -> retrain -> compare -> draw -> write
"""

from __future__ import annotations

from hpo.report.build import build_report
from hpo.report.collect import StudyData

# The submodules keep their names (``hpo.report.collect`` is the module, ``collect.collect`` its function).
__all__ = ["StudyData", "build_report"]
