"""How numbers read, in the terminal and in the report alike: values, parameters, percentages, p-values,
durations. Plain text; the report escapes it."""

from __future__ import annotations

import math
from typing import Any, Mapping

MISSING = "–"


def value(v: Any, digits: int = 4) -> str:
    """A value as shown: floats to ``digits`` significant digits (3 in scientific notation when tiny or huge),
    booleans as TOML writes them, None and non-finite numbers as a dash."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return MISSING
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def params_text(params: Mapping[str, Any], digits: int = 3) -> str:
    """``variant=double, l2=1e-06, ...``: a configuration on one line."""
    return ", ".join(f"{k}={value(v, digits)}" for k, v in params.items())


def pct(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f} %"


def pvalue(p: float | None) -> str:
    """``p = 0.154``, ``p = 2.0e-17``, or ``p < 1e-300`` where the exact binomial tail underflows."""
    if p is None or not math.isfinite(p):
        return MISSING
    if p == 0.0:
        return "p < 1e-300"
    return f"p = {p:.3f}" if p >= 1e-3 else f"p = {p:.1e}"


def seconds(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return MISSING
    if v < 120:
        return f"{v:.0f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"
