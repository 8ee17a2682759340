#!/usr/bin/env python3
"""Accuracy on realistic simulated tilt series (issue #9): one row per simulator preset.

For each preset (``tiltflow simulate --preset``: clean, phase, hot, drift_grid, clutter, carbon,
beads_hard, all) a 512² series at 10 Å/px with 41 tilts and a perturbed import (tilt 1°,
rotation 0.5°, shifts 10 px, magnification 1 %) goes through import -> find-fiducials -> align
-> estimate-ice, and is compared with the simulator's truth:

- recall / precision of the declared-size beads (a found bead matches a true one within 3 px in
  3D; beads of another size found are counted apart, not as false positives),
- reprojection of the *true* beads with the refined matrices vs their true 2D positions, mean
  and max (px, views where the bead is inside the image),
- largest relative error of the per-tilt scale factors, relative thickness error.

    python benchmarks/bench_realism.py                 # every preset, seeds 1
    python benchmarks/bench_realism.py --presets carbon,all --seeds 1,2 --size 512
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRESETS = ("clean", "phase", "hot", "drift_grid", "clutter", "carbon", "beads_hard", "all")


def run_case(preset: str, seed: int, size: int, work: Path) -> dict:
    from tiltflow.align import AlignParams, run_align
    from tiltflow.fiducials import FiducialParams, run_find_fiducials
    from tiltflow.fiducials.io import read_fiducials
    from tiltflow.geometry import project
    from tiltflow.ice import IceParams, run_estimate_ice
    from tiltflow.importer import ImportOptions, run_import
    from tiltflow.io.tomograms import read_tomogram_set
    from tiltflow.simulate import SimulationParams, simulate_dataset
    from tiltflow.simulate.truth import Truth

    os.chdir(work)
    p = SimulationParams.from_preset(
        preset, raw_size=(size, size), pixel_size=10.0, perturb_tilt_deg=1.0,
        perturb_rotation_deg=0.5, perturb_shift_px=10.0, perturb_mag=0.01, seed=seed,
    )
    t0 = time.perf_counter()
    simulate_dataset(p, Path("sim"), ["TS_01"])
    run_import("sim/import.star", "import/tomograms.star", ImportOptions(angpix=10.0))
    run_find_fiducials("import/tomograms.star", "fid", FiducialParams(threads=2))
    run_align("fid/tomograms.star", "ali", AlignParams())
    run_estimate_ice("ali/tomograms.star", "ice", IceParams())
    wall = time.perf_counter() - t0
    truth = Truth.from_dict(json.loads(Path("sim/TS_01/truth.json").read_text()))
    tomo = read_tomogram_set("ice/tomograms.star")["TS_01"]
    kept = np.array([v for v in range(truth.proj.shape[0]) if v + 1 not in set(truth.excluded_views)])
    radii = truth.bead_radii_A if truth.bead_radii_A.size else np.full(len(truth.beads_3d), truth.bead_radius_A)
    declared = np.abs(radii / truth.bead_radius_A - 1) < 0.25
    # the refined 3D beads through the refined matrices, against the true 2D positions (the
    # refined world is gauge-fixed to the imported one, so the true 3D beads cannot be used)
    ali = read_tomogram_set("ali/tomograms.star")["TS_01"]
    beads = read_fiducials(ali.extra["rlnTomoFiducialsStarFile"], ali.pixel_size)
    pred = project(ali.proj, beads)  # (n, found, 2)
    true2d = truth.beads_2d[kept]  # (n, m, 2)
    vis = truth.visible[kept]
    dist = np.linalg.norm(pred[:, :, None, :] - true2d[:, None, :, :], axis=-1)
    mean_dist = np.nanmean(np.where(vis[:, None, :], dist, np.nan), axis=0)  # (found, m)
    mean_dist = np.where(np.isfinite(mean_dist), mean_dist, np.inf)
    best = np.argmin(mean_dist, axis=0) if beads.shape[0] else np.zeros(true2d.shape[1], int)
    hit = (mean_dist[best, np.arange(true2d.shape[1])] < 3.0) if beads.shape[0] else np.zeros(true2d.shape[1], bool)
    ok = hit & declared
    err = np.linalg.norm(pred[:, best[ok], :] - true2d[:, ok, :], axis=-1)[vis[:, ok]]
    recall = float(hit[declared].mean()) if declared.any() else float("nan")
    real = mean_dist.min(axis=1) < 3.0 if beads.shape[0] else np.zeros(0, bool)
    fp = int((~real).sum())
    precision = float(real.mean()) if real.size else float("nan")
    other_found = int(hit[~declared].sum())
    scale_err = float(np.max(np.abs(tomo.ctf_scale / truth.scale_factor[kept] - 1)))
    t_fit = float(tomo.extra.get("rlnTomoRelativeIceThickness", np.nan))
    return {
        "preset": preset, "seed": seed, "recall": recall, "precision": precision,
        "false_beads": fp, "other_size_found": other_found,
        "other_size_true": int((~declared).sum()), "reproj_mean": float(err.mean()),
        "reproj_max": float(err.max()), "scale_err_max": scale_err,
        "thickness_err": t_fit / truth.ice_thickness_rel - 1, "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print("| preset | seed | recall | precision | other-size found | reprojection mean / max (px) | scale-factor error | thickness error | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                here = os.getcwd()
                try:
                    r = run_case(preset, seed, args.size, Path(tmp))
                except Exception as exc:  # report and go on
                    print(f"| {preset} | {seed} | failed: {type(exc).__name__}: {exc} |")
                    continue
                finally:
                    os.chdir(here)
            rows.append(r)
            print(
                f"| {preset} | {seed} | {r['recall']:.2f} | {r['precision']:.2f} | "
                f"{r['other_size_found']}/{r['other_size_true']} | {r['reproj_mean']:.2f} / "
                f"{r['reproj_max']:.2f} | {100 * r['scale_err_max']:.1f} % | "
                f"{100 * r['thickness_err']:+.1f} % | {r['wall_s']:.1f} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
