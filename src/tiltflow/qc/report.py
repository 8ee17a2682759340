"""The QC summary as a self-contained HTML page (table + links to the per-tomogram figures)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from tiltflow.qc.metrics import SUMMARY_COLUMNS, _cell


def summary_html(
    rows: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Any],
    version: str,
    figure_for: Mapping[str, str] | None = None,
) -> str:
    """HTML summary; flagged rows are highlighted, names link to their figure (relative path)."""
    figure_for = figure_for or {}
    n_flagged = sum(1 for r in rows if r.get("flags"))
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>tiltflow QC summary</title>',
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "tr.flagged{background:#fde2e2}tr.ok{background:#e8f5e9}</style></head><body>",
        f"<h1>tiltflow QC summary</h1><p>tiltflow {html.escape(version)}; {len(rows)} tomograms, "
        f"{n_flagged} flagged. Thresholds: "
        + ", ".join(
            f"{html.escape(str(k))} = {html.escape(str(v))}" for k, v in sorted(thresholds.items())
        )
        + "</p>",
        "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in SUMMARY_COLUMNS) + "</tr>",
    ]
    for r in rows:
        cls = "flagged" if r.get("flags") else "ok"
        cells = []
        for c in SUMMARY_COLUMNS:
            text = html.escape(_cell(r.get(c)))
            if c == "name" and r.get("name") in figure_for:
                text = f'<a href="{html.escape(figure_for[r["name"]])}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        out.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</table>")
    assumed = sorted({v for r in rows for v in (r.get("columns_used") or {}).values()})
    if assumed:
        out.append(
            "<h2>Side-file columns read</h2><p>"
            + ", ".join(html.escape(a) for a in assumed)
            + "</p>"
        )
    problems = [(r["name"], p) for r in rows for p in (r.get("problems") or [])]
    if problems:
        out.append("<h2>Problems reading side files</h2><ul>")
        out += [f"<li>{html.escape(n)}: {html.escape(p)}</li>" for n, p in problems]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
