"""HTML building blocks for the report: the page's CSS, escaping, tables, key-value lists, badges, plots.

User-supplied text (study names, attrs, parameter names and values, class names, paths, error messages) only
ever reaches the page through ``esc``; the only scripts are plotly.js and plotly's own figure calls, whose
JSON plotly writes with ``<``, ``>`` and ``/`` escaped.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Sequence

from hpo.formats import value as fmt
from hpo.report.figures import Plot

CSS = """
:root { --fg:#1d2329; --muted:#5b6670; --line:#d9dee3; --ok:#1e7d32; --warn:#b35c00; --info:#1f5fa8; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #f6f7f9; }
header { background: #16324f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; word-break: break-all; }
header p { margin: 0; color: #cfd8e3; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px; \
position: sticky; top: 0; z-index: 5; }
nav a { margin-right: 18px; color: #16324f; text-decoration: none; font-weight: 600; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 32px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; \
padding: 8px 24px 20px; margin: 18px 0; }
h2 { border-bottom: 2px solid #16324f; padding-bottom: 4px; }
h3 { margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv th { width: 220px; }
.muted, .note { color: var(--muted); }
.note { font-size: 13px; margin: 2px 0 10px; }
.badge { display: inline-block; min-width: 48px; text-align: center; border-radius: 10px; padding: 0 8px;
         font-size: 12px; font-weight: 700; color: #fff; text-transform: uppercase; }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); } \
.badge.info { background: var(--info); }
.glance { display: grid; grid-template-columns: repeat(3, 1fr); gap: 14px; }
.glance div { background: #fff; border: 1px solid var(--line); border-left: 5px solid #16324f; \
border-radius: 6px; padding: 10px 14px; }
.glance h3 { margin: 0 0 6px; font-size: 15px; text-transform: uppercase; color: var(--muted); }
.missing { background: #fff6e5; border: 1px solid #f0c36d; border-radius: 6px; \
padding: 8px 14px; margin: 10px 0; }
.plot { margin: 6px 0 18px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.grid figure { margin: 0; width: 104px; text-align: center; font-size: 11px; }
.grid img { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid var(--line); }
pre { background: #f3f5f7; padding: 10px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""


def esc(value: Any) -> str:
    """Every user-visible value goes through here."""
    return html.escape(str(value), quote=True)


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (), cls: str = ""
) -> str:
    """Cells are escaped unless they are ``Raw`` (markup built here from escaped parts)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = c.html if isinstance(c, Raw) else esc(fmt(c))
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class Raw:
    """Markup already escaped by this module."""

    def __init__(self, html_: str):
        self.html = html_


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v.html if isinstance(v, Raw) else esc(fmt(v))}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def badge(level: str) -> Raw:
    level = level if level in ("ok", "warn", "info") else "info"
    return Raw(f'<span class="badge {level}">{level}</span>')


def plot_html(p: Plot) -> str:
    title = f"<h3>{esc(p.title)}</h3>"
    if p.figure is None:
        return f'{title}<p class="missing">{esc(p.note or "not available")}</p>'
    div = p.figure.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )
    note = f'<p class="note">{esc(p.note)}</p>' if p.note else ""
    return f'{title}{note}<div class="plot">{div}</div>'
