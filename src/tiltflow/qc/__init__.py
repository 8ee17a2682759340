"""Quality control of a tiltflow run: figures per tomogram and one self-contained HTML report.

* :func:`collect` reads what the steps wrote for one tomogram (provenance status, tomogram-set
  fragments, side files ``tracks_/fiducials_/align_/ice_<name>.star`` of the fiducials and align
  steps, and the simulator's ``truth.json`` for the bundled example), defensively: absent files
  or columns leave that figure "not available" (the columns assumed are in
  :data:`tiltflow.qc.sidefiles.ASSUMED`; the ones actually used are recorded per tomogram).
* :func:`render_figures` writes the figures of one tomogram (:data:`FIGURES`);
  :func:`plot_tomogram` the one-page overview PNG.
* :func:`tiltflow.qc.step_figures.render_step_figure` draws a step's own figure (align, hand,
  ice) from its side file alone (the workflow's ``step_figure`` rule).
* :func:`summary_row` / :func:`summary_tsv` / :func:`summary_html` make the table and the report
  over all tomograms with flags (missing, failed_<step>, high_residual, few_beads,
  sparse_tracks, ice_fit_failed, ice_fallback) and their reasons in words.
"""

from tiltflow.qc.figures import FIGURE_KEYS, FIGURES, figure_filename
from tiltflow.qc.metrics import (
    STEPS,
    SUMMARY_COLUMNS,
    Thresholds,
    TomogramQC,
    collect,
    flag_reasons,
    flags_for,
    summary_row,
    summary_tsv,
)
from tiltflow.qc.plots import plot_tomogram, render_figures
from tiltflow.qc.report import summary_html, write_report

__all__ = [
    "FIGURES",
    "FIGURE_KEYS",
    "STEPS",
    "SUMMARY_COLUMNS",
    "Thresholds",
    "TomogramQC",
    "collect",
    "figure_filename",
    "flag_reasons",
    "flags_for",
    "plot_tomogram",
    "render_figures",
    "summary_html",
    "summary_row",
    "summary_tsv",
    "write_report",
]
