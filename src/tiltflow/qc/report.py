"""The QC report: one self-contained HTML file (overview + one page per tomogram).

Everything is inlined (figures as data URIs, style and script), so the file works from
``file://``, needs no network and keeps working inside ``snakemake --report`` (HTML and zip form),
where it is shown in a frame whose relative links cannot resolve: navigation is by fragment
(``#t=<name>``) and script only. Tomogram pages are ``<template>`` elements, so a report of
hundreds of tomograms opens as fast as its overview.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tiltflow.qc.assets import CSS, JS
from tiltflow.qc.metrics import Thresholds

#: flag code -> words shown in the report
FLAG_WORDS: dict[str, str] = {
    "missing": "not in the final set",
    "failed": "a step failed",
    "high_residual": "high residual",
    "few_beads": "few beads",
    "sparse_tracks": "sparse tracks",
    "ice_fit_failed": "ice fit failed",
    "ice_fallback": "ice: cosine fallback",
}

STEP_WORDS = {"import": "import", "fiducials": "fiducials", "align": "alignment", "ice": "ice"}


def flag_words(code: str) -> str:
    if code.startswith("failed_"):
        step = code[len("failed_") :]
        return f"{STEP_WORDS.get(step, step)} failed"
    return FLAG_WORDS.get(code, code.replace("_", " "))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if fmt == "d":
        return str(int(round(float(x))))
    return format(float(x), fmt)


def _fmt_sd(value: Any, sd: Any, unit: str = "") -> str:
    """'99.94 ± 0.06 nm': the uncertainty to one significant digit (two when it starts with
    1), the value to the same decimals; without an uncertainty 3 significant digits."""
    if value is None:
        return "–"
    v = float(value)
    u = f" {unit}" if unit else ""
    if sd is None or not math.isfinite(float(sd)) or float(sd) <= 0:
        return f"{v:.3g}{u}"
    s = float(sd)
    exponent = int(math.floor(math.log10(s)))
    decimals = -exponent + (1 if s / 10**exponent < 2 else 0)
    decimals = min(max(decimals, 0), 6)
    return f"{v:.{decimals}f} ± {s:.{decimals}f}{u}"


def _px(x: Any) -> str:
    """A residual in px: 3 significant digits but at most 3 decimals (0.096, 8.17, 12.3)."""
    if x is None or not math.isfinite(float(x)):
        return "–"
    v = float(x)
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def row_class(r: Mapping[str, Any]) -> str:
    if r.get("status") == "failed":
        return "failed"
    return "flagged" if r.get("flags") else "ok"


def status_words(r: Mapping[str, Any]) -> str:
    if r.get("status") == "failed":
        return f"failed ({STEP_WORDS.get(r.get('failed_step', ''), r.get('failed_step', ''))})"
    return "flagged" if r.get("flags") else "ok"


def attention_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Failed tomograms first, then flagged ones, then the rest (each in sheet order)."""
    rank = {"failed": 0, "flagged": 1, "ok": 2}
    return sorted(rows, key=lambda r: rank[row_class(r)])  # sorted() is stable


def data_uri(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        p.suffix.lower(), "application/octet-stream"
    )
    return f"data:{mime};base64," + base64.b64encode(p.read_bytes()).decode("ascii")


def _bytes_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# dataset-level figures


def dataset_histograms(rows: Sequence[Mapping[str, Any]], th: Thresholds) -> list[tuple[str, str]]:
    """(title, PNG data URI) of the residual and thickness histograms over all tomograms."""
    import numpy as np

    from tiltflow.qc.plots import STYLE, _plain_log_ticks, _plt, png_bytes

    out: list[tuple[str, str]] = []
    plt = _plt()
    before = np.array([r["residual_before_px"] for r in rows if r.get("residual_before_px")])
    after = np.array([r["residual_after_px"] for r in rows if r.get("residual_after_px")])
    thick = np.array(
        [r["ice_thickness_nm"] for r in rows if r.get("ice_thickness_nm") is not None], float
    )
    with plt.rc_context(STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.3), gridspec_kw={"wspace": 0.25})
        vals = np.concatenate([before, after, [th.max_residual_px]])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        lo = 10 ** math.floor(math.log10(vals.min() * 0.8))
        hi = 10 ** math.ceil(math.log10(vals.max() * 1.25))
        bins = np.logspace(math.log10(lo), math.log10(hi), 40)
        if before.size:
            a1.hist(before, bins=bins, color="#8c8c8c", label="imported alignment")
        if after.size:
            a1.hist(after, bins=bins, color="#1f77b4", alpha=0.9, label="refined alignment")
        a1.axvline(
            th.max_residual_px,
            color="#d62728",
            ls="--",
            lw=1,
            label=f"flag threshold {th.max_residual_px:g} px",
        )
        a1.set_xscale("log")
        _plain_log_ticks(a1, "x")
        a1.set_xlabel("mean bead residual (px)")
        a1.set_ylabel("tomograms")
        a1.set_title(f"bead residual ({after.size} tomograms aligned)")
        top = max([1.0] + [float(p.get_height()) for p in a1.patches])
        a1.set_ylim(0, top * 1.55)  # headroom: the legend never covers a bar
        a1.legend(fontsize=8.5, loc="upper center", ncol=2)
        if thick.size:
            width = max(1.0, float(np.ptp(thick)) / 30)  # nm; never finer than 1 nm
            edges = np.arange(
                math.floor(thick.min() / width - 2) * width,
                math.ceil(thick.max() / width + 3) * width,
                width,
            )
            a2.hist(thick, bins=edges, color="#1f77b4")
            a2.set_title(f"ice thickness (median {np.median(thick):.0f} nm)")
        else:
            a2.text(0.5, 0.5, "no ice thickness", ha="center", transform=a2.transAxes)
            a2.set_title("ice thickness")
        a2.set_xlabel("ice thickness (nm)")
        a2.set_ylabel("tomograms")
        for ax in (a1, a2):
            ax.yaxis.get_major_locator().set_params(integer=True)
        out.append(("Bead residual and ice thickness over the dataset", _bytes_uri(png_bytes(fig))))
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------
# HTML pieces


def _flags_html(r: Mapping[str, Any]) -> str:
    reasons = r.get("flag_reasons") or {}
    out = []
    for code in r.get("flags") or []:
        if code == "failed" or code.startswith("failed_"):
            continue  # the status column says which step failed
        bad = code == "missing" or code.startswith("failed")
        title = reasons.get(code, "")
        out.append(
            f'<span class="flag{" bad" if bad else ""}" title="{_e(title)}">{_e(flag_words(code))}</span>'
        )
    return "".join(out) or '<span class="muted">none</span>'


def _reasons_list(r: Mapping[str, Any]) -> str:
    reasons = r.get("flag_reasons") or {}
    items = []
    for code in r.get("flags") or []:
        if code in ("missing", "failed"):
            continue
        why = reasons.get(code) or flag_words(code)
        cls = "" if code.startswith("failed") else ' class="warn"'
        items.append(f"<li{cls}><b>{_e(flag_words(code))}</b>: {_e(why)}</li>")
    if (
        r.get("status") == "failed"
        and r.get("reason")
        and not any(c.startswith("failed_") for c in r.get("flags") or [])
    ):
        items.append(f"<li>{_e(r['reason'])}</li>")
    return f'<ul class="reasons">{"".join(items)}</ul>' if items else ""


def _residual_cell(r: Mapping[str, Any]) -> tuple[str, str]:
    b, a = r.get("residual_before_px"), r.get("residual_after_px")
    if b is None and a is None:
        return "–", ""
    text = f"{_px(b)} → {_px(a)}"
    return text, "" if a is None else repr(float(a))


def _tilts_cell(r: Mapping[str, Any]) -> tuple[str, str]:
    n = r.get("n_tilts")
    used = r.get("tilts_refined")
    if used is None:
        used = r.get("tilts_seen")
    if n is None or used is None:
        return "–", ""
    text = f"{used} / {n}"
    ice = r.get("ice_tilts_used")
    if ice is not None and used is not None and ice != used:
        text += f" (ice {ice})"
    return text, "" if used is None else str(used)


def _thickness_cell(r: Mapping[str, Any]) -> tuple[str, str]:
    t = r.get("ice_thickness_nm")
    if t is None:
        return "–", ""
    return _fmt_sd(t, r.get("ice_thickness_sd_nm")), repr(float(t))


def _scale_cell(r: Mapping[str, Any]) -> tuple[str, str]:
    lo, hi = r.get("scale_factor_min"), r.get("scale_factor_max")
    if lo is None or hi is None:
        return "–", ""
    return f"{lo:.3f} – {hi:.3f}", repr(float(lo))


def _normal_cell(r: Mapping[str, Any]) -> tuple[str, str]:
    a = r.get("ice_normal_tilt_deg")
    if a is None:
        return "–", ""
    return _fmt_sd(a, r.get("ice_normal_sd_deg")), repr(float(a))


COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    # header, unit, type, title (tooltip)
    ("tomogram", "", "text", "name in the tomogram set"),
    ("status", "", "text", "ok, flagged (worth a look) or failed (not in the final set)"),
    ("flags", "", "text", "why a tomogram is flagged; hover for the reason"),
    ("beads", "", "num", "gold beads found in 3D"),
    (
        "residual before → after",
        "px",
        "num",
        "mean distance between detected and projected beads with the imported and the refined "
        "alignment; sorts by the refined value",
    ),
    ("tilts used", "", "num", "tilts refined by the alignment / tilts in the series"),
    ("ice thickness", "nm", "num", "from the Beer–Lambert fit, ± 1 standard deviation"),
    (
        "scale factor range",
        "",
        "num",
        "smallest – largest rlnCtfScalefactor; sorts by the smallest",
    ),
    ("ice normal tilt", "°", "num", "angle between the ice normal and the beam at zero tilt"),
)


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = []
    for name, unit, typ, title in COLUMNS:
        u = f' <span class="unit">({_e(unit)})</span>' if unit else ""
        cls = ' class="text"' if typ == "text" else ""
        head.append(f'<th data-type="{typ}"{cls} title="{_e(title)}">{_e(name)}{u}</th>')
    body = []
    for r in rows:
        name = str(r["name"])
        cls = row_class(r)
        words = " ".join(flag_words(c) for c in r.get("flags") or [])
        search = " ".join([name, status_words(r), words, " ".join(r.get("flags") or [])]).lower()
        rank = {"failed": "0", "flagged": "1", "ok": "2"}[cls]
        cells = [
            f'<td data-sort="{_e(name)}"><a href="#t={_e(name)}" data-go="{_e(name)}">{_e(name)}</a></td>',
            f'<td class="text" data-sort="{rank}"><span class="badge {cls}">{_e(status_words(r))}</span></td>',
            f'<td class="text wrap" data-sort="{_e(words)}">{_flags_html(r)}</td>',
            f'<td data-sort="{"" if r.get("n_beads") is None else r["n_beads"]}">{_num(r.get("n_beads"), "d")}</td>',
        ]
        for fn in (_residual_cell, _tilts_cell, _thickness_cell, _scale_cell, _normal_cell):
            text, key = fn(r)
            cells.append(f'<td data-sort="{_e(key)}">{_e(text)}</td>')
        body.append(
            f'<tr class="{cls}" data-name="{_e(name)}" data-search="{_e(search)}">'
            + "".join(cells)
            + "</tr>"
        )
    return (
        '<table class="data" id="tomograms"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "\n".join(body)
        + "</tbody></table>"
    )


def _unit(text: str, unit: str) -> str:
    return _e(text) if text == "–" else _e(text + unit)


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    return (
        '<table class="kv">'
        + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _numbers(r: Mapping[str, Any]) -> str:
    steps = r.get("steps") or {}
    alignment = [
        ("beads in 3D", _num(r.get("n_beads"), "d")),
        (
            "tilts",
            _e(_tilts_cell(r)[0])
            + (' <span class="muted">(refined / total)</span>' if _tilts_cell(r)[1] else ""),
        ),
        ("mean residual, imported alignment", _unit(_px(r.get("residual_before_px")), " px")),
        ("mean residual, refined alignment", _unit(_px(r.get("residual_after_px")), " px")),
        ("largest residual, refined", _unit(_px(r.get("residual_max_after_px")), " px")),
        ("pixel size", _unit(_num(r.get("pixel_size_A"), "g"), " Å")),
    ]
    t_rel = _fmt_sd(r.get("ice_thickness_rel"), r.get("ice_thickness_sd_rel"))
    ice = [
        ("ice thickness", _unit(_thickness_cell(r)[0], " nm")),
        ("… in mean free paths", _e(t_rel)),
        (
            "ice normal tilt",
            _unit(_normal_cell(r)[0], "°")
            + (
                f' <span class="muted">(from {_e(r["ice_normal_source"])})</span>'
                if r.get("ice_normal_source")
                else ""
            ),
        ),
        ("scale factor range", _e(_scale_cell(r)[0])),
        ("ice fit", _e(r.get("ice_fit_status") or "–")),
        (
            "steps",
            ", ".join(
                f"{_e(STEP_WORDS.get(s, s))} {_e(steps[s])}" for s in STEP_WORDS if s in steps
            ),
        ),
    ]
    return f'<div class="cards"><div>{_kv(alignment)}</div><div>{_kv(ice)}</div></div>'


def _truth_table(t: Mapping[str, Any]) -> str:
    if not t:
        return ""

    def g(k: str, fmt: str = ".3g") -> str:
        return _num(t.get(k), fmt)

    def p(k: str) -> str:
        return _px(t.get(k))

    rows = [
        (
            "projected beads vs true positions, imported",
            f"mean {p('reproj_error_imported_mean_px')} px, largest {p('reproj_error_imported_max_px')} px",
        ),
        (
            "projected beads vs true positions, refined",
            f"mean {p('reproj_error_refined_mean_px')} px, largest {p('reproj_error_refined_max_px')} px",
        ),
        (
            "tilt-angle error (RMS, mean removed)",
            f"imported {g('tilt_error_imported_rms_deg')}°, refined {g('tilt_error_refined_rms_deg')}°",
        ),
        ("beads found / simulated", f"{g('n_beads_matched', 'g')} / {g('n_beads_true', 'g')}"),
        (
            "ice thickness",
            f"true {g('ice_thickness_true_nm', '.4g')} nm, error {g('ice_thickness_error_pct', '+.2g')} %",
        ),
        (
            "ice normal",
            f"{g('ice_normal_error_deg', '.2g')}° from the true normal "
            f"(true tilt {g('ice_normal_tilt_true_deg', '.2g')}°)",
        ),
        ("scale factors", f"largest error {g('scale_factor_max_error_pct', '.2g')} %"),
    ]
    return "<h2>Against the simulator's truth</h2>" + _kv([(k, _e(v)) for k, v in rows])


def _figures_html(
    r: Mapping[str, Any], fig_dir: Path | None, embed: bool, rel_prefix: str = ""
) -> str:
    from tiltflow.qc.plots import FIGURES

    infos = r.get("figures") or {}
    wide: list[str] = []
    narrow: list[str] = []
    missing: list[str] = []
    for spec in FIGURES:
        info = infos.get(spec.key)
        if info is None or (spec.key == "truth" and not info.get("available")):
            continue
        if not info.get("available") or fig_dir is None:
            why = info.get("why") or "no figure"
            missing.append(f"<li><b>{_e(spec.title)}</b>: {_e(why)}</li>")
            continue
        path = fig_dir / info["file"]
        src = data_uri(path) if embed else rel_prefix + info["file"]
        block = (
            f'<figure id="fig-{_e(r["name"])}-{spec.key}"><h3>{_e(spec.title)}</h3>'
            f'<img src="{src}" alt="{_e(spec.title)} of {_e(r["name"])}" '
            f'decoding="async"><figcaption>{_e(spec.caption)}</figcaption></figure>'
        )
        (narrow if spec.key in ("ice", "scale") else wide).append(block)
    out = ""
    if wide:
        out += '<div class="sheet">' + "".join(wide) + "</div>"
    if narrow:
        out += '<div class="sheet two">' + "".join(narrow) + "</div>"
    if missing:
        out += (
            '<div class="na"><p>Not available for this tomogram:</p><ul>'
            + "".join(missing)
            + "</ul></div>"
        )
    return out


def tomogram_page(
    r: Mapping[str, Any],
    fig_dir: Path | None,
    prev_name: str | None,
    next_name: str | None,
    embed: bool = True,
) -> str:
    name = str(r["name"])
    cls = row_class(r)

    def link(n: str | None, text: str) -> str:
        if n is None:
            return f'<span class="muted">{text}</span>'
        return f'<a href="#t={_e(n)}" data-go="{_e(n)}">{text}</a>'

    parts = [
        '<nav class="pager"><a href="#overview" data-go="">← overview</a>'
        f"{link(prev_name, '‹ previous')}{link(next_name, 'next ›')}</nav>",
        f'<h1>{_e(name)} <span class="badge {cls}">{_e(status_words(r))}</span></h1>',
    ]
    reasons = _reasons_list(r)
    if reasons:
        parts.append(reasons)
    parts.append(_numbers(r))
    parts.append(_truth_table(r.get("truth") or {}))
    parts.append("<h2>Figures</h2>")
    if embed:
        parts.append(_figures_html(r, fig_dir, embed))
    else:
        parts.append(
            f'<p class="na">This compact overview holds no figures. The figures of {_e(name)} are '
            f"in Snakemake's report under <b>Quality control → {_e(name)}</b>, and all on one "
            "page in the full QC report (<code>results/qc/summary.html</code>).</p>"
        )
    problems = r.get("problems") or []
    if problems:
        parts.append(
            "<h2>Problems reading the step outputs</h2><ul>"
            + "".join(f"<li>{_e(p)}</li>" for p in problems)
            + "</ul>"
        )
    return "\n".join(p for p in parts if p)


def _attention(rows: Sequence[Mapping[str, Any]]) -> str:
    bad = [r for r in attention_order(rows) if row_class(r) != "ok"]
    if not bad:
        return f'<div class="allgood">All {len(rows)} tomograms passed every check.</div>'
    items = []
    for r in bad:
        n = _e(r["name"])
        reasons = r.get("flag_reasons") or {}
        why = [
            reasons.get(c) or flag_words(c)
            for c in r.get("flags") or []
            if c not in ("missing", "failed")
        ]
        if not why and r.get("reason"):
            why = [r["reason"]]
        items.append(
            f'<li><a href="#t={n}" data-go="{n}">{n}</a> '
            f'<span class="badge {row_class(r)}">{_e(status_words(r))}</span> '
            f"{_e('; '.join(why))}</li>"
        )
    return (
        f'<div class="attention"><h3>Needs attention: {len(bad)} of {len(rows)}</h3>'
        f"<ul>{''.join(items)}</ul></div>"
    )


def summary_html(
    rows: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Any] | Thresholds,
    version: str,
    figure_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    files: Sequence[tuple[str, str]] = (),
    title: str = "tiltflow QC report",
    compact: bool = False,
) -> str:
    """The whole report as one HTML document.

    ``rows``: :func:`tiltflow.qc.metrics.summary_row` dicts with ``figures`` (from
    :func:`tiltflow.qc.plots.render_figures`); ``figure_dirs``: name -> directory holding that
    tomogram's figure files (embedded as data URIs); ``files``: (path, what) of the outputs to
    list (as text: a link would not resolve inside Snakemake's report). ``compact``: the same
    report without the tomograms' figures (a few hundred bytes per tomogram), for the HTML form
    of Snakemake's report, where Chromium shows no page larger than 2 MiB (a data: URL limit).
    """
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_dict(thresholds)
    figure_dirs = figure_dirs or {}
    ordered = attention_order(rows)
    n_failed = sum(1 for r in rows if row_class(r) == "failed")
    n_flagged = sum(1 for r in rows if row_class(r) == "flagged")
    names = [str(r["name"]) for r in ordered]
    options = "".join(f'<option value="{_e(n)}">{_e(n)}</option>' for n in names)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        '<header class="bar"><span class="brand">tiltflow QC</span>'
        '<a href="#overview" data-go="">overview</a>'
        '<label>tomogram <select id="picker"><option value="">(overview)</option>'
        f"{options}</select></label>"
        f'<span class="muted">{len(rows)} tomograms · {n_failed} failed · {n_flagged} flagged</span>'
        "</header>",
        "<main>",
        '<section id="overview">',
        f"<h1>Quality control of {len(rows)} tomograms</h1>",
        f'<p class="muted">Passed every check: {len(rows) - n_failed - n_flagged}; flagged (worth '
        f"a look): {n_flagged}; failed (not in the final set): {n_failed}. A tomogram "
        "is flagged for a " + "; ".join(_e(s) for s in th.sentences()) + ".</p>",
        _attention(rows),
        "<h2>Dataset</h2>",
    ]
    if compact:
        out.insert(
            out.index(_attention(rows)),
            '<p class="na">Compact overview: the tomogram pages hold their numbers but no figures '
            "(so that this page fits Snakemake's HTML report). The figures are in Snakemake's "
            "report under <b>Quality control → &lt;tomogram&gt;</b>, and on each tomogram's page "
            "of the full QC report, <code>results/qc/summary.html</code> (also in "
            "<code>snakemake --report report.zip</code>).</p>",
        )
    if rows:
        for fig_title, uri in dataset_histograms(rows, th):
            out.append(f'<figure class="hist"><img src="{uri}" alt="{_e(fig_title)}"></figure>')
    out += [
        "<h2>All tomograms</h2>",
        '<div class="controls"><input type="search" id="filter" '
        'placeholder="filter by name, status or flag" aria-label="filter">'
        '<label><input type="checkbox" id="only-attention"> only those needing attention</label>'
        '<span class="muted" id="count"></span>'
        '<span class="muted">click a column to sort</span></div>',
        _table(ordered),
    ]
    if files:
        out.append(
            '<h2>Files</h2><table class="kv">'
            + "".join(f"<tr><th><code>{_e(p)}</code></th><td>{_e(w)}</td></tr>" for p, w in files)
            + "</table>"
        )
    out.append(
        f"<footer>tiltflow {_e(version)} · self-contained report: figures embedded, no network "
        "access needed.</footer></section>"
    )
    out.append('<section id="tomogram" hidden></section>')
    for i, r in enumerate(ordered):
        name = str(r["name"])
        d = figure_dirs.get(name)
        page = tomogram_page(
            r,
            None if d is None else Path(d),
            names[i - 1] if i > 0 else None,
            names[i + 1] if i + 1 < len(names) else None,
            embed=not compact,
        )
        out.append(f'<template id="tpl-{_e(name)}">{page}</template>')
    out.append("</main>")
    names_json = json.dumps(names).replace("</", "<\\/")
    out.append(
        f'<script type="application/json" id="names">{names_json}</script>'
        f"<script>{JS}</script></body></html>"
    )
    return "\n".join(out) + "\n"


def write_report(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Any] | Thresholds,
    version: str,
    figure_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    files: Sequence[tuple[str, str]] = (),
    compact: bool = False,
) -> None:
    from tiltflow.io.atomic import write_text_atomic

    title = "tiltflow QC overview (compact)" if compact else "tiltflow QC report"
    text = summary_html(rows, thresholds, version, figure_dirs, files, title, compact)
    write_text_atomic(path, text)
