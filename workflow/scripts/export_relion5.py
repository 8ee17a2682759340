"""Workflow script of rule export_relion5: the final set as RELION 5 STAR files."""

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.export.relion5 import export_relion5  # noqa: E402
from tiltflow.io.tomograms import read_tomogram_set  # noqa: E402

star = str(snakemake.input.star)  # noqa: F821
res = export_relion5(
    read_tomogram_set(star),
    str(snakemake.output[0]),  # noqa: F821
    set_path=star,
    mirror_z=bool(snakemake.params.mirror_z),  # noqa: F821
)
for name, tilts in res.tilts.items():
    log.info("%s: largest reprojection change %.3g px", name, tilts.max_change_px)
log.info("wrote %s (%d tomograms)", res.tomograms_star, len(res.tilts))
