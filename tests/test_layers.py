"""The package's layers: imports only go down, TensorFlow only behind hpo.backend, quiet unless -v."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "hpo"


def _layer_table() -> list[set[str]]:
    """hpo/__init__.py's table, top to bottom (the one place it is written): the module names of each row."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())) or ""
    rows = [line for line in doc.split("Layers;", 1)[1].splitlines()[1:] if line.startswith("  ")]
    return [set(re.split(r"\s{2,}", row.strip())[0].split()) for row in rows]


LAYERS = _layer_table()
# TensorFlow, behind hpo.backend; scikit-learn where data is split (3 s to import: `hpo list` must not wait)
LAZY_ALLOWED = {"tensorflow", "keras", "absl", "sklearn"}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in ("report", "dashboard", "export") and parts[-1] == "__main__":
        top = "__main__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer of hpo/__init__.py's table")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported name, at function level?) for every import in the file; ``from m import a`` gives ``m.a``
    when that is a module of the package, else ``m``."""
    mods = _modules()
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                for a in node.names
            ]
        else:
            continue
        out += [(n, id(node) not in top_level) for n in names]
    return out


def test_imports_only_go_down_and_only_tensorflow_or_extras_are_lazy():
    mods = _modules()
    for module, path in mods.items():
        if module == "hpo":
            continue  # the package's __init__ re-exports the public API from every layer
        for name, lazy in _imports(path):
            if name.split(".")[0] != "hpo":
                assert not lazy or name.split(".")[0] in LAZY_ALLOWED, f"{module} imports {name} lazily"
                continue
            assert name in mods, f"{module} imports {name}, which is not a module of the package"
            # Only the command line imports lazily: the top layer, so no cycle can hide there, and
            # `hpo --help` must not wait for Optuna, scikit-learn and TensorFlow.
            assert not lazy or module == "hpo.cli", f"{module} imports {name} inside a function: a cycle"
            if module.startswith("hpo.report") and name.startswith("hpo.report."):
                continue  # the report's own modules (build -> collect, compare, ...)
            assert _layer(name) < _layer(module), f"{module} imports {name}, which is not above it"


def test_no_import_cycle_by_the_shared_tool():
    tool = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if not tool.is_file():
        pytest.skip("../shared/tools/import_cycles.py is not beside this checkout")
    r = subprocess.run([sys.executable, str(tool), str(PACKAGE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_only_backend_imports_tensorflow_or_keras_directly():
    for module, path in _modules().items():
        if module == "hpo.backend":
            continue
        for name, _ in _imports(path):
            top = name.split(".")[0]
            ok = (
                top not in ("tensorflow", "keras")
                or module == "hpo.training"
                and name.startswith("tensorflow.python")
            )
            assert ok, f"{module} imports {name}; reach TensorFlow/Keras through hpo.backend"


def test_loading_a_study_and_listing_never_start_tensorflow():
    code = (
        "import sys; from hpo import cli, config; config.load_study('fashion'); cli.cmd_list(); "
        "sys.exit(int('tensorflow' in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_tensorflow_loads_without_a_line_on_stderr_unless_verbose():
    code = (
        "from hpo import backend; import sys; backend.set_verbose(len(sys.argv) > 1); "
        "backend.keras().layers.Dense(2)(backend.tensorflow().zeros((1, 2)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_without_tensorflow_a_run_says_which_extra_to_install(tmp_path, data_dir):
    from tests.conftest import write_study

    study = write_study(tmp_path, n_trials=1)
    code = (
        "import sys; sys.modules['tensorflow'] = None; from hpo.cli import main; "
        f"sys.exit(main(['run', '--study', {str(study)!r}, '--data-dir', {str(data_dir)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert ".[cpu]" in r.stderr and ".[gpu]" in r.stderr
