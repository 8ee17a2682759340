"""Fiducial detection on simulated tilt series with known beads (truth from tiltflow.simulate)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from tiltflow.backend import get_array_module, gpu_available, to_numpy
from tiltflow.errors import ConfigError
from tiltflow.fiducials import (
    FiducialParams,
    fiducials_from_imod,
    find_fiducials,
    run_find_fiducials,
)
from tiltflow.fiducials.detect import detect_peaks, fit_beads
from tiltflow.fiducials.io import (
    Tracks,
    read_fiducials,
    read_tracks,
    read_tracks_arrays,
    tracks_path_for,
    write_fiducials,
    write_tracks,
)
from tiltflow.simulate import SimulationParams, simulate_tilt_series

BASE = dict(
    raw_size=(512, 512), pixel_size=8.0, n_beads=30, dose_per_tilt=1.5, tilt_step=3.0, seed=1
)


@functools.cache
def _sim(**kw: object):
    return simulate_tilt_series(SimulationParams(**{**BASE, **kw}))


def _sim_kw(d: dict) -> object:
    return _sim(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _score(sim, res) -> dict[str, float]:
    """Recall, precision (match within one bead radius), mean 3D error, min track coverage."""
    truth = sim.truth
    r = sim.params.bead_radius_A / sim.params.pixel_size
    true = truth.beads_3d
    out = {"recall": 0.0, "precision": 0.0, "err": np.inf, "coverage": 0.0}
    if res.xyz.shape[0] == 0:
        return out
    dist, idx = cKDTree(res.xyz).query(true)
    found = dist < r
    d2, _ = cKDTree(true).query(res.xyz)
    out["recall"] = float(found.mean())
    out["precision"] = float((d2 < r).mean())
    out["err"] = float(dist[found].mean())
    kept = sim.kept
    vis = truth.visible[kept].T  # (true beads, tilts)
    obs = res.tracks.dense(res.xyz.shape[0], kept.size)
    cov = []
    for j in np.flatnonzero(found):
        seen = np.isfinite(obs[idx[j], :, 0])
        cov.append((seen & vis[j]).sum() / max(vis[j].sum(), 1))
        # observed positions are the true projections to sub-pixel precision
        e = np.linalg.norm(
            obs[idx[j]][seen & vis[j]] - truth.beads_2d[kept][seen & vis[j], j], axis=1
        )
        assert np.median(e) < 0.5
    out["coverage"] = float(np.min(cov))
    return out


CASES = {
    "8A_dose1.5": dict(),
    "flipYZ_flipZ": dict(flip_yz=True, flip_z=True, seed=2),
    "flipYZ": dict(flip_yz=True, seed=3, dose_per_tilt=2.0),
    "excluded_9A": dict(excluded_views=(1, 2, 20, 41), pixel_size=9.0, seed=4),
    "odd_511x487_10A": dict(raw_size=(511, 487), pixel_size=10.0, dose_per_tilt=2.0, seed=5),
    "crowded_61tilts": dict(
        raw_size=(640, 640), n_beads=60, tilt_step=2.0, dose_per_tilt=4.0, seed=6
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_true_alignment(case: str) -> None:
    sim = _sim_kw(CASES[case])
    tomo = sim.tomogram(perturbed=False)
    res = find_fiducials(sim.kept_stack(), tomo, FiducialParams())
    s = _score(sim, res)
    print(case, s)
    assert s["recall"] >= 0.98
    assert s["precision"] >= 0.98
    assert s["err"] <= 0.2
    assert s["coverage"] >= 0.90
    # tracks: fitted = projection of the 3D bead with the tomogram's matrices
    t = res.tracks
    assert np.allclose(np.linalg.norm(t.obs - t.fit, axis=1), t.residual)
    assert np.median(t.residual) < 0.5


def test_perturbed_alignment() -> None:
    sim = _sim_kw(
        dict(
            n_beads=40,
            perturb_tilt_deg=1.0,
            perturb_rotation_deg=0.5,
            perturb_shift_px=10.0,
            seed=7,
        )
    )
    tomo = sim.tomogram(perturbed=True)
    assert not np.allclose(tomo.proj, sim.truth.proj[sim.kept])
    res = find_fiducials(sim.kept_stack(), tomo, FiducialParams())
    s = _score(sim, res)
    print("perturbed", s)
    assert s["recall"] >= 0.95
    assert s["precision"] >= 0.95
    assert s["coverage"] >= 0.90
    assert s["err"] <= 3.0  # world frame kept (refinement is the align step's job)


def test_empty_image_writes_valid_empty_star(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    sim = _sim_kw(dict(n_beads=0, tilt_step=6.0))
    tomo = sim.tomogram(perturbed=False)
    res = find_fiducials(sim.kept_stack(), tomo, FiducialParams())
    assert res.xyz.shape == (0, 3)
    assert "no gold bead found" in res.message
    # through the step API and the files
    monkeypatch.chdir(tmp_path)
    _write_project(tmp_path, sim, tomo)
    with caplog.at_level("WARNING"):
        out = run_find_fiducials("tomograms.star", "fid", FiducialParams())
    assert "no gold bead found" in caplog.text
    fid = Path(out[tomo.name].extra["rlnTomoFiducialsStarFile"])
    assert fid == Path("fid/fiducials_TS_01.star")
    assert read_fiducials(fid, tomo.pixel_size).shape == (0, 3)
    assert len(read_tracks(tracks_path_for(fid))) == 0
    text = fid.read_text()
    assert "_rlnOriginXAngst" in text and text.startswith("# version 30001")


def test_wrong_radius_no_crash() -> None:
    sim = _sim_kw(dict(tilt_step=6.0))
    tomo = sim.tomogram(perturbed=False)
    res = find_fiducials(sim.kept_stack(), tomo, FiducialParams(radius_A=400.0))
    # beads 8x smaller than the template: at most a few spurious beads, never a crash
    assert res.xyz.shape[0] <= 3
    with pytest.raises(ConfigError):
        find_fiducials(sim.kept_stack(), tomo, FiducialParams(radius_A=4.0))


def _write_project(root: Path, sim, tomo) -> None:
    from tiltflow.io.mrc import write_stack
    from tiltflow.io.tomograms import write_tomogram_set
    from tiltflow.model import TomogramSet

    write_stack(root / tomo.tilt_series, sim.kept_stack(), tomo.pixel_size)
    write_tomogram_set(root / "tomograms.star", TomogramSet((tomo,)))


def test_cli_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiltflow.cli import main
    from tiltflow.io.tomograms import read_tomogram_set

    sim = _sim_kw(dict(tilt_step=4.0, n_beads=12, seed=11))
    tomo = sim.tomogram(perturbed=False)
    monkeypatch.chdir(tmp_path)
    _write_project(tmp_path, sim, tomo)
    assert (
        main(
            [
                "find-fiducials",
                "--t",
                "tomograms.star",
                "--o",
                "out",
                "--r",
                "50",
                "--d",
                "4",
                "--j",
                "2",
            ]
        )
        == 0
    )
    tset = read_tomogram_set("out/tomograms.star")
    fid = tset[tomo.name].extra["rlnTomoFiducialsStarFile"]
    xyz = read_fiducials(fid, tomo.pixel_size)
    assert xyz.shape[0] == 12
    d, _ = cKDTree(xyz).query(sim.truth.beads_3d)
    assert d.max() < 0.5
    # RELION reads rlnOriginX/Y/ZAngst = world px × pixel size from the first block
    import starfile

    df = starfile.read(fid)
    assert np.allclose(
        np.sort(df["rlnOriginXAngst"].to_numpy()), np.sort(xyz[:, 0] * tomo.pixel_size)
    )
    tr = read_tracks_arrays(tracks_path_for(fid))
    assert set(np.unique(tr.bead)) == set(range(12))
    assert tr.tilt.max() < tomo.n_tilts


def test_io_round_trip(tmp_path: Path) -> None:
    xyz = np.array([[1.5, 2.25, 3.0], [100.0, 200.0, 50.125]])
    write_fiducials(tmp_path / "fiducials_a.star", xyz, 8.0)
    assert np.allclose(read_fiducials(tmp_path / "fiducials_a.star", 8.0), xyz)
    assert tracks_path_for(tmp_path / "fiducials_a.star") == tmp_path / "tracks_a.star"
    t = Tracks(
        bead=np.array([1, 0]),
        tilt=np.array([3, 2]),
        obs=np.array([[1.0, 2.0], [3.0, 4.0]]),
        fit=np.array([[1.5, 2.0], [3.0, 4.5]]),
        residual=np.array([0.5, 0.5]),
        score=np.array([9.0, 8.0]),
    )
    write_tracks(tmp_path / "tracks_a.star", t)
    back = read_tracks_arrays(tmp_path / "tracks_a.star")
    assert back.bead.tolist() == [0, 1] and back.tilt.tolist() == [2, 3]
    assert np.allclose(back.obs, [[3.0, 4.0], [1.0, 2.0]])


def test_params_from_dict() -> None:
    p = FiducialParams.from_dict({"radius_A": 60, "threshold": 5, "device": "cpu"})
    assert p.radius_A == 60.0 and p.threshold == 5.0
    with pytest.raises(ConfigError, match="unknown fiducials option"):
        FiducialParams.from_dict({"radius": 50})
    with pytest.raises(ConfigError):
        FiducialParams.from_dict({"device": "tpu"})
    with pytest.raises(ConfigError):
        FiducialParams(source="imod")


def test_subpixel_fit_symmetric_soft_bead() -> None:
    """Independent renderer: Gaussian-softened bead with a bright fringe, known sub-pixel centres."""
    rng = np.random.default_rng(3)
    h, w, r = 96, 96, 6.0
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    cx = 40 + rng.uniform(-0.5, 0.5, 20)
    cy = 50 + rng.uniform(-0.5, 0.5, 20)
    stack = np.empty((20, h, w), np.float32)
    for i in range(20):
        d = np.hypot(xx - cx[i], yy - cy[i])
        prof = 1 / (1 + np.exp((d - r) / 0.8)) - 0.15 * np.exp(-((d - r - 2.0) ** 2) / 2.0)
        stack[i] = 200.0 * (1 - 0.3 * prof) + rng.normal(0, 3.0, (h, w))
    fit = fit_beads(stack, np.arange(20), np.round(cx) + 1, np.round(cy) - 1, r)
    assert fit.ok.all()
    err = np.hypot(fit.x - cx, fit.y - cy)
    assert err.mean() < 0.1
    assert (fit.significance > 10).all()


def test_imod_tracks(tmp_path: Path) -> None:
    import imodmodel

    sim = _sim_kw(dict(tilt_step=4.0, n_beads=10, seed=12, excluded_views=(3,)))
    tomo = sim.tomogram(perturbed=False)
    t = sim.truth
    rows = []
    for b in range(t.beads_3d.shape[0]):
        for v in range(t.n_raw):
            if t.visible[v, b]:
                x, y = t.beads_2d[v, b]
                rows.append(
                    {"object_id": 0, "contour_id": b, "x": x + 0.5, "y": y + 0.5, "z": float(v)}
                )
    imodmodel.write(pd.DataFrame(rows), tmp_path / "ts.fid")
    p = FiducialParams(source="imod", imod_fid=str(tmp_path / "ts.fid"), imod_excluded_views=(3,))
    res = fiducials_from_imod(tomo, p, (sim.stack.shape[2], sim.stack.shape[1]))
    d, _ = cKDTree(res.xyz).query(t.beads_3d)
    assert res.xyz.shape[0] == 10
    assert d.max() < 1e-3


def test_backend_cpu_and_gpu_errors() -> None:
    assert get_array_module("cpu") is np
    assert get_array_module("auto") is not None
    with pytest.raises(ConfigError):
        get_array_module("quantum")
    if not gpu_available():
        with pytest.raises(ConfigError, match="gpu"):
            get_array_module("gpu")
    assert isinstance(to_numpy(np.ones(3)), np.ndarray)


@pytest.mark.skipif(not gpu_available(), reason="CuPy or a GPU is not available")
def test_gpu_path_matches_cpu() -> None:
    sim = _sim_kw(dict(tilt_step=6.0))
    st = sim.kept_stack()
    r = sim.params.bead_radius_A / sim.params.pixel_size
    cpu = detect_peaks(st, r, 4.0, 2, xp=np)
    gpu = detect_peaks(st, r, 4.0, 2, xp=get_array_module("gpu"))
    a = np.column_stack([cpu.frame, cpu.x, cpu.y])
    b = np.column_stack([gpu.frame, gpu.x, gpu.y])
    # the same peaks (a marginal one at the threshold may differ)
    assert abs(len(a) - len(b)) <= max(2, len(a) // 100)
    d, _ = cKDTree(b).query(a)
    assert np.mean(d == 0) > 0.99
    tomo = sim.tomogram(perturbed=False)
    rc = find_fiducials(st, tomo, FiducialParams(device="cpu"))
    rg = find_fiducials(st, tomo, FiducialParams(device="gpu"))
    assert rc.xyz.shape == rg.xyz.shape
    assert np.allclose(np.sort(rc.xyz, axis=0), np.sort(rg.xyz, axis=0), atol=1e-3)
