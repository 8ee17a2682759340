"""Quality control of a tiltflow run: one figure per tomogram and a summary over all of them.

* :func:`collect` reads what the steps wrote for one tomogram (provenance status, tomogram-set
  fragments, side files ``tracks_/fiducials_/align_/ice_<name>.star``), defensively: absent
  files or columns leave that panel "not available" (the columns assumed are in
  :data:`tiltflow.qc.sidefiles.ASSUMED`; the ones actually used are recorded per tomogram).
* :func:`plot_tomogram` draws the beads on the lowest-dose tilt, residuals per tilt and per bead,
  the refined parameter changes per tilt and the ice fit.
* :func:`summary_row` / :func:`summary_tsv` / :func:`summary_html` make the table over all
  tomograms with flags (missing, failed_<step>, high_residual, few_beads, sparse_tracks,
  ice_fit_failed).
"""

from tiltflow.qc.metrics import (
    STEPS,
    SUMMARY_COLUMNS,
    Thresholds,
    TomogramQC,
    collect,
    flags_for,
    summary_row,
    summary_tsv,
)
from tiltflow.qc.plots import plot_tomogram
from tiltflow.qc.report import summary_html

__all__ = [
    "STEPS",
    "SUMMARY_COLUMNS",
    "Thresholds",
    "TomogramQC",
    "collect",
    "flags_for",
    "plot_tomogram",
    "summary_html",
    "summary_row",
    "summary_tsv",
]
