"""Stored names: every trial and study user attr is read and written through hpo.keys."""

from __future__ import annotations

import ast

import pytest

from hpo import keys
from tests.conftest import ROOT


def _literal_keys(path) -> list[str]:
    """String literals used as an attr key: ``set_user_attr("x", ...)``, ``user_attrs.get("x")``,
    ``user_attrs["x"]`` (also through a local ``ua``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.func.attr == "set_user_attr" or (
                node.func.attr == "get" and owner_name in ("user_attrs", "ua")
            ):
                key = node.args[0]
        elif isinstance(node, ast.Subscript):
            owner = node.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if owner_name in ("user_attrs", "ua"):
                key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {key.value!r}")
    return found


def test_the_package_names_no_attr_key_as_a_bare_string():
    literals = [hit for p in sorted((ROOT / "hpo").rglob("*.py")) for hit in _literal_keys(p)]
    assert literals == [], "use the constants of hpo/keys.py:\n" + "\n".join(literals)


@pytest.mark.slow
def test_every_key_a_study_run_writes_is_one_of_hpo_keys(mf_study):
    _, _, study = mf_study  # a multi-fidelity run with a warm start, promotions and a final
    written = {k for t in study.trials for k in t.user_attrs}
    assert {keys.RUNG, keys.WARM_START, keys.FIDELITY, keys.FINAL, keys.HISTORY} <= written
    assert written <= keys.TRIAL_ATTRS, written - keys.TRIAL_ATTRS
    assert set(study.user_attrs) <= keys.STUDY_ATTRS, set(study.user_attrs) - keys.STUDY_ATTRS
