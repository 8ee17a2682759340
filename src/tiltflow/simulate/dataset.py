"""Several simulated IMOD projects plus the RELION 4 import STAR that lists them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tiltflow.errors import ConfigError
from tiltflow.io.star import star_path, write_star
from tiltflow.simulate.core import OPTICS_GROUP, simulate_tilt_series
from tiltflow.simulate.imod_files import write_imod_project
from tiltflow.simulate.params import SimulationParams

IMPORT_STAR_NAME = "import.star"


def derived_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th tilt series of a dataset (deterministic, independent streams)."""
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0]
    )


def simulate_dataset(
    params: SimulationParams, out_dir: str | os.PathLike[str], names: Sequence[str]
) -> Path:
    """Simulate one IMOD project per name in ``out_dir/<name>/`` and write ``out_dir/import.star``.

    Tilt series ``i`` uses ``params`` with ``seed = derived_seed(params.seed, i)``. The import STAR
    is RELION 4's ``relion_tomo_import_tomograms --i`` table (block ``data_``: rlnTomoImportImodDir,
    rlnTomoTiltSeriesName, rlnTomoImportCtfPlotterFile, rlnTomoName, rlnTomoImportOrderList,
    rlnTomoImportFractionalDose, rlnOpticsGroupName). Its paths are relative to the current
    working directory, so callers run from the project directory (as RELION does).
    """
    names = list(names)
    if not names:
        raise ConfigError("simulate: no tilt-series names given")
    bad = [n for n in names if not n or any(c.isspace() or c in "/\\:" for c in n)]
    if bad:
        raise ConfigError(
            f"simulate: invalid tilt-series names {bad} (no spaces, slashes or colons)"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"simulate: duplicate tilt-series names in {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {
        "rlnTomoImportImodDir": [],
        "rlnTomoTiltSeriesName": [],
        "rlnTomoImportCtfPlotterFile": [],
        "rlnTomoName": [],
        "rlnTomoImportOrderList": [],
        "rlnTomoImportFractionalDose": [],
        "rlnOpticsGroupName": [],
    }
    if params.dose_profile != "equal":
        # unequal per-tilt doses are only known from the mdoc's ExposureDose (tiltflow's own label)
        cols["tfMdocFile"] = []
    for i, name in enumerate(names):
        ts = simulate_tilt_series(params.replace(seed=derived_seed(params.seed, i)))
        paths = write_imod_project(ts, out / name, name)
        cols["rlnTomoImportImodDir"].append(star_path(out / name))
        cols["rlnTomoTiltSeriesName"].append(star_path(paths["stack"]))
        cols["rlnTomoImportCtfPlotterFile"].append(star_path(paths["defocus"]))
        cols["rlnTomoName"].append(name)
        cols["rlnTomoImportOrderList"].append(star_path(paths["order_list"]))
        cols["rlnTomoImportFractionalDose"].append(float(params.dose_per_tilt))
        cols["rlnOpticsGroupName"].append(OPTICS_GROUP)
        if "tfMdocFile" in cols:
            cols["tfMdocFile"].append(star_path(paths["mdoc"]))
    star = out / IMPORT_STAR_NAME
    write_star(star, {"": cols}, header=("version 30001",))
    return star
