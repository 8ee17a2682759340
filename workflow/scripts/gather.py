"""Workflow script of the gather_<step> rules: per-tomogram fragments -> results/<step>/tomograms.star.

Tomograms whose provenance says "failed" are left out and listed as ``# missing <name>: <reason>``.
"""

from _common import params_comment, read_provenance, setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.io.tomograms import gather_sets  # noqa: E402

step = str(snakemake.params.step)  # noqa: F821
names = [str(n) for n in snakemake.params.names]  # noqa: F821
stars = [str(p) for p in snakemake.input.stars]  # noqa: F821
provs = [str(p) for p in snakemake.input.provenance]  # noqa: F821
fragments, missing = [], {}
for name, star, prov in zip(names, stars, provs):
    record = read_provenance(prov)
    if record.get("status") == "ok":
        fragments.append(star)
    else:
        missing[name] = record.get("reason") or "failed (no reason recorded)"
        log.warning("%s: tomogram %s is missing: %s", step, name, missing[name])
gather_sets(fragments, str(snakemake.output.star), missing, comments=[params_comment(step, snakemake.params.params)])  # noqa: F821
log.info("%s: gathered %d of %d tomograms", step, len(fragments), len(names))
