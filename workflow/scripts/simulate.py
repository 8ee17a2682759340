"""Workflow script of rule simulate: the synthetic example (IMOD projects + RELION import STAR)."""

from pathlib import Path

from _common import fail_cleanly, setup_logging

log = setup_logging(snakemake)  # noqa: F821

from tiltflow.errors import TiltflowError  # noqa: E402
from tiltflow.provenance import provenance_record, write_provenance  # noqa: E402

params = dict(snakemake.params.params)  # noqa: F821
names = [str(n) for n in snakemake.params.names]  # noqa: F821
out_star = Path(str(snakemake.output.star))  # noqa: F821
out_dir = out_star.parent
try:
    from tiltflow.simulate import SimulationParams, simulate_dataset

    written = Path(simulate_dataset(SimulationParams.from_dict(params), out_dir, names))
except TiltflowError as exc:
    fail_cleanly("simulate", exc)
if written.resolve() != out_star.resolve():
    raise RuntimeError(f"simulate_dataset wrote {written}, the workflow expects {out_star}")
write_provenance(
    out_dir / "provenance.json", provenance_record("simulate", None, params, [], [str(out_star)])
)
log.info("simulated %d tilt series into %s", len(names), out_dir)
