"""Workflow script of the gather_<step> rules: per-tomogram fragments -> results/<step>/tomograms.star.

Tomograms whose provenance says "failed" are left out and listed as ``# missing <name>: <reason>``.
"""

from _common import setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.io.tomograms import gather_sets  # noqa: E402
from tiltflow.provenance import params_comment, split_fragments  # noqa: E402

step = str(snakemake.params.step)  # noqa: F821
names = [str(n) for n in snakemake.params.names]  # noqa: F821
fragments, missing = split_fragments(
    names, list(snakemake.input.stars), list(snakemake.input.provenance)
)  # noqa: F821
for name, reason in missing.items():
    log.warning("%s: tomogram %s is missing: %s", step, name, reason)
gather_sets(
    fragments,
    str(snakemake.output.star),
    missing,
    comments=[params_comment(step, snakemake.params.params)],
)  # noqa: F821
log.info("%s: gathered %d of %d tomograms", step, len(fragments), len(names))
