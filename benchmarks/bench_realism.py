#!/usr/bin/env python3
"""Accuracy on realistic simulated tilt series (issue #9): one row per simulator preset.

For each preset (``tiltflow simulate --preset``: clean, phase, hot, drift_grid, clutter, carbon,
beads_hard, all) a 512² series at 10 Å/px with 41 tilts (``--size``, ``--angpix``,
``--tilt-step``: e.g. 1024² at 8 Å/px with 61 tilts) and a perturbed import (tilt 1°,
rotation 0.5°, shifts 10 px, magnification 1 %) goes through import -> find-fiducials -> align
-> estimate-ice, and is compared with the simulator's truth:

- recall / precision of the declared-size beads (a found bead matches a true one within 3 px in
  3D; beads of another size found are counted apart, not as false positives),
- reprojection of the *true* beads with the refined matrices vs their true 2D positions, mean
  and max (px, views where the bead is inside the image),
- largest relative error of the per-tilt scale factors, relative thickness error.

    python benchmarks/bench_realism.py                 # every preset, seeds 1
    python benchmarks/bench_realism.py --presets carbon,all --seeds 1,2 --size 512
    python benchmarks/bench_realism.py --presets clean,all --size 1024 --angpix 8 --tilt-step 2
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


def run_case(
    preset: str,
    seed: int,
    size: int,
    work: Path,
    angpix: float = 10.0,
    tilt_step: float = 3.0,
    radius_A: float = 50.0,
) -> dict:
    from tiltflow.align import AlignParams, run_align
    from tiltflow.fiducials import FiducialParams, run_find_fiducials
    from tiltflow.fiducials.io import (
        fiducials_filename,
        read_beads,
        read_fiducials,
        read_tracks_arrays,
        tracks_path_for,
    )
    from tiltflow.geometry import project
    from tiltflow.ice import IceParams, run_estimate_ice
    from tiltflow.importer import ImportOptions, run_import
    from tiltflow.io.tomograms import read_tomogram_set
    from tiltflow.simulate import SimulationParams, simulate_dataset
    from tiltflow.simulate.truth import Truth

    os.chdir(work)
    p = SimulationParams.from_preset(
        # per-view tilt perturbation up to 1° (0.75° at a 2° step: the importer matches the
        # .defocus views by angle within max(1°, half the step) and refuses beyond)
        preset, raw_size=(size, size), pixel_size=angpix, perturb_tilt_deg=min(1.0, 0.375 * tilt_step),
        perturb_rotation_deg=0.5, perturb_shift_px=10.0, perturb_mag=0.01, seed=seed,
        tilt_step=tilt_step, bead_radius_A=radius_A, small_bead_radius_A=radius_A / 2,
    )
    t0 = time.perf_counter()
    simulate_dataset(p, Path("sim"), ["TS_01"])
    run_import("sim/import.star", "import/tomograms.star", ImportOptions(angpix=angpix))
    run_find_fiducials(
        "import/tomograms.star", "fid", FiducialParams(radius_A=radius_A, threads=2)
    )
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
    # fitted radius (side file, tfRadiusAngst) of the found beads of either size: each bead of
    # the find-fiducials side file is matched by its 2D track to the true 2D positions
    tr = read_tracks_arrays(tracks_path_for(Path("fid") / fiducials_filename("TS_01")))
    side = read_beads(tracks_path_for(Path("fid") / fiducials_filename("TS_01")))
    rad_decl: list[float] = []
    rad_other: list[float] = []
    if side is not None and len(tr.bead):
        rad_side = side["tfRadiusAngst"].to_numpy(float)
        for bi in np.unique(tr.bead):
            sel = tr.bead == bi
            d = np.linalg.norm(tr.obs[sel][:, None, :] - true2d[tr.tilt[sel]], axis=2).mean(axis=0)
            j = int(np.argmin(d))
            if d[j] < 3.0:
                (rad_decl if declared[j] else rad_other).append(float(rad_side[bi]))
    return {
        "preset": preset, "seed": seed, "recall": recall, "precision": precision,
        "false_beads": fp, "other_size_found": other_found,
        "other_size_true": int((~declared).sum()), "reproj_mean": float(err.mean()),
        "reproj_max": float(err.max()), "scale_err_max": scale_err,
        "thickness_err": t_fit / truth.ice_thickness_rel - 1, "wall_s": wall,
        "radius_declared_A": float(np.median(rad_decl)) if rad_decl else float("nan"),
        "radius_other_A": float(np.median(rad_other)) if rad_other else float("nan"),
        "true_radius_other_A": float(np.median(radii[~declared])) if (~declared).any() else float("nan"),
        "size": size, "angpix": angpix, "n_tilts": int(kept.size),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--size", type=int, default=512, help="image side (px)")
    ap.add_argument("--angpix", type=float, default=10.0, help="pixel size (Å)")
    ap.add_argument("--tilt-step", type=float, default=3.0, help="deg: 3 = 41 tilts, 2 = 61")
    ap.add_argument("--radius", type=float, default=50.0, help="declared bead radius (Å)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(
        "| preset | seed | recall | precision | other-size found | fitted radius declared / other"
        " (Å) | reprojection mean / max (px) | scale-factor error | thickness error | wall (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                here = os.getcwd()
                try:
                    r = run_case(
                        preset, seed, args.size, Path(tmp), args.angpix, args.tilt_step,
                        args.radius,
                    )
                except Exception as exc:  # report and go on
                    print(f"| {preset} | {seed} | failed: {type(exc).__name__}: {exc} |")
                    continue
                finally:
                    os.chdir(here)
            rows.append(r)
            print(
                f"| {preset} | {seed} | {r['recall']:.2f} | {r['precision']:.2f} | "
                f"{r['other_size_found']}/{r['other_size_true']} | "
                f"{r['radius_declared_A']:.0f} / {r['radius_other_A']:.0f} | "
                f"{r['reproj_mean']:.2f} / "
                f"{r['reproj_max']:.2f} | {100 * r['scale_err_max']:.1f} % | "
                f"{100 * r['thickness_err']:+.1f} % | {r['wall_s']:.1f} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
