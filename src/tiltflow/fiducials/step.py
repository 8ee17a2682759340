"""The fiducials step: tomogram set in, fiducials STAR + tracks per tomogram + tomogram set out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiltflow.backend import DEVICES, get_array_module
from tiltflow.errors import ConfigError, InputError
from tiltflow.fiducials.associate import AssociationParams, associate
from tiltflow.fiducials.detect import default_binning, detect, detect_peaks_scales
from tiltflow.fiducials.io import (
    Tracks,
    bead_table,
    fiducials_filename,
    tracks_path_for,
    write_fiducials,
    write_tracks,
)
from tiltflow.fiducials.small import (
    MIN_SMALL_RADIUS_PX,
    SMALL_SCALE,
    find_small_beads,
    small_binning,
)
from tiltflow.fiducials.small import merge as merge_small
from tiltflow.fiducials.triangulate import cameras, robust_triangulate
from tiltflow.geometry import project
from tiltflow.imod.fid import read_fid_model
from tiltflow.io.guard import refuse_output_dir_over_inputs, tomogram_set_inputs
from tiltflow.io.mrc import read_stack
from tiltflow.io.staging import OutputTransaction
from tiltflow.io.star import star_path
from tiltflow.io.tomograms import read_tomogram_set, write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet
from tiltflow.params import params_from_dict

log = logging.getLogger(__name__)

F64 = NDArray[np.float64]
SOURCES: tuple[str, ...] = ("detect", "imod")


@dataclass(frozen=True)
class FiducialParams:
    """Parameters of fiducial finding (defaults = CLI defaults; names as RELION where shared).

    ``radius_A`` (--r) bead radius in Å; ``threshold`` (--d) 2D detection threshold in units of
    the robust noise sigma of the matched-filter map; ``binning`` detection binning (0 = auto:
    bead radius ≈ 3-6 binned px); ``threads`` (--j) FFT workers; ``device`` cpu/gpu/auto.
    Association: ``search_px`` largest alignment error between neighbouring views,
    ``min_fraction`` / ``min_views`` how often a bead must be seen among the views where it is
    inside the image, ``fill_significance`` the significance a targeted fit needs to fill a view.
    ``source`` = "imod" reads IMOD tracks instead of detecting: ``imod_fid`` is the model path
    (``{name}`` is replaced by the tomogram name), ``imod_prexg`` the optional ``.prexg`` of the
    stack the model was tracked on, ``imod_excluded_views`` the 1-based raw views excluded from
    the tomogram (needed when views were excluded; default: read ``tilt.com`` next to the model).
    """

    radius_A: float = 50.0
    threshold: float = 4.0
    binning: int = 0
    threads: int = 1
    device: str = "cpu"
    search_px: float = 40.0
    min_fraction: float = 0.5
    min_views: int = 5
    fill_significance: float = 3.0
    source: str = "detect"
    imod_fid: str = ""
    imod_prexg: str = ""
    imod_excluded_views: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> None:
            raise ConfigError(f"fiducials parameter {key}: {msg}")

        if not (np.isfinite(self.radius_A) and self.radius_A > 0):
            bad("radius_A", f"must be > 0 Å, got {self.radius_A!r}")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            bad("threshold", f"must be > 0, got {self.threshold!r}")
        if self.binning < 0:
            bad("binning", "must be >= 0 (0 = automatic)")
        if self.threads < 1:
            bad("threads", "must be >= 1")
        if self.device not in DEVICES:
            bad("device", f"must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not (self.search_px > 0):
            bad("search_px", "must be > 0")
        if not (0.0 < self.min_fraction <= 1.0):
            bad("min_fraction", "must be in (0, 1]")
        if self.min_views < 2:
            bad("min_views", "must be >= 2")
        if not (self.fill_significance > 0):
            bad("fill_significance", "must be > 0")
        if self.source not in SOURCES:
            bad("source", f"must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "imod" and not self.imod_fid:
            bad("imod_fid", "source 'imod' needs the path of the IMOD fiducial model (.fid)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FiducialParams:
        """Build from a config mapping; unknown keys or wrong kinds of value raise ConfigError."""
        return params_from_dict(cls, d, "fiducials")

    def association(self) -> AssociationParams:
        return AssociationParams(
            search_px=self.search_px,
            min_fraction=self.min_fraction,
            min_views=self.min_views,
            fill_significance=self.fill_significance,
            threads=self.threads,
        )


@dataclass(frozen=True)
class FiducialResult:
    """Fiducials of one tomogram: 3D positions, 2D tracks and a message for the user."""

    xyz: F64  # (m, 3) world px
    score: F64  # (m,)
    tracks: Tracks
    message: str
    n_detections: int = 0
    #: (m,) fitted bead radius (px) and anisotropy, NaN when not measured (IMOD models)
    radius_px: F64 | None = None
    anisotropy: F64 | None = None


def _tracks(proj: F64, xyz: F64, obs: F64, score_obs: F64) -> Tracks:
    fit = project(proj, xyz).transpose(1, 0, 2) if xyz.shape[0] else np.zeros((0, proj.shape[0], 2))
    b, t = np.nonzero(np.isfinite(obs).all(axis=2))
    o = obs[b, t]
    f = fit[b, t]
    sc = np.nan_to_num(score_obs[b, t], nan=0.0) if score_obs.size else np.zeros(b.size)
    return Tracks(
        bead=b.astype(np.int64),
        tilt=t.astype(np.int64),
        obs=o,
        fit=f,
        residual=np.linalg.norm(o - f, axis=1),
        score=sc,
    )


def find_fiducials(
    stack: NDArray[np.floating], tomo: Tomogram, params: FiducialParams = FiducialParams()
) -> FiducialResult:
    """Detect, track and triangulate the gold beads of one tilt series (library entry point).

    ``stack`` (n, h, w) holds the tomogram's tilt images in row order. Returns world positions
    (px), per-(bead, tilt) tracks and a message; an empty result (no beads) is not an error.
    """
    if stack.ndim != 3 or stack.shape[0] != tomo.n_tilts:
        raise InputError(
            tomo.tilt_series,
            f"stack has {stack.shape[0] if stack.ndim == 3 else '?'} frames but tomogram {tomo.name} has {tomo.n_tilts} tilts",
        )
    xp = get_array_module(params.device)
    radius_px = params.radius_A / tomo.pixel_size
    if radius_px < 1.0:
        raise ConfigError(
            f"bead radius {params.radius_A} Å is {radius_px:.2f} px at {tomo.pixel_size} Å/px: too small to detect"
        )
    binning = params.binning or default_binning(radius_px)
    r_small = SMALL_SCALE * radius_px
    peaks = small_peaks = None
    if r_small >= MIN_SMALL_RADIUS_PX and small_binning(r_small) == binning:
        # both passes' peaks from one read and one forward FFT of every frame
        peaks, small_peaks = detect_peaks_scales(
            stack, (radius_px, r_small), params.threshold, binning, xp=xp,
            threads=params.threads, source=tomo.tilt_series,
        )
    det = detect(
        stack, radius_px, params.threshold, binning, xp=xp, threads=params.threads,
        source=tomo.tilt_series, peaks=peaks,
    )
    beads = associate(det, stack, tomo.proj, tomo.size, radius_px, params.association())
    # beads of half the declared size that the declared-size filter misses (next to others)
    small = find_small_beads(
        stack, tomo.proj, tomo.size, radius_px, beads, params.threshold,
        params.association(), xp=xp, threads=params.threads, peaks=small_peaks,
    )
    beads = merge_small(beads, small)
    tracks = _tracks(tomo.proj, beads.xyz, beads.obs, beads.score_obs)
    if beads.n_beads == 0:
        msg = (
            f"{tomo.name}: no gold bead found ({len(det)} 2D detections, none forming a consistent 3D track); "
            f"check the bead radius (--r {params.radius_A:g} Å = {radius_px:.1f} px) and the threshold (--d {params.threshold:g}). "
            "Wrote an empty fiducials file."
        )
    else:
        msg = f"{tomo.name}: {beads.n_beads} beads, {len(tracks)} observations in {tomo.n_tilts} tilts"
    return FiducialResult(
        xyz=beads.xyz,
        score=beads.score,
        tracks=tracks,
        message=msg,
        n_detections=len(det),
        radius_px=beads.radius_px,
        anisotropy=beads.anisotropy,
    )


def fiducials_from_imod(
    tomo: Tomogram, params: FiducialParams, image_size: tuple[int, int]
) -> FiducialResult:
    """Fiducials from an IMOD model: tracks as given, 3D positions triangulated robustly."""
    fid = Path(params.imod_fid.replace("{name}", tomo.name))
    if params.imod_excluded_views is not None:
        excluded = set(params.imod_excluded_views)
    elif (fid.parent / "tilt.com").is_file():
        from tiltflow.imod.comfile import read_tilt_com

        excluded = set(read_tilt_com(fid.parent / "tilt.com").exclude)
    else:
        excluded = set()
    n_raw = tomo.n_tilts + len(excluded)
    kept = np.array([v for v in range(n_raw) if v + 1 not in excluded], dtype=np.int64)
    if kept.size != tomo.n_tilts:
        raise InputError(
            fid,
            f"{kept.size} kept views after exclusions but tomogram {tomo.name} has {tomo.n_tilts} tilts",
        )
    prexg = None
    if params.imod_prexg:
        from tiltflow.imod.xf import read_xf

        prexg = read_xf(params.imod_prexg.replace("{name}", tomo.name))
    obs = read_fid_model(fid, n_views=n_raw, prexg=prexg, raw_size=image_size).dense(kept)
    xyz, inl, _ = robust_triangulate(cameras(tomo.proj), obs, k=6.0, floor=3.0, min_views=2)
    ok = np.isfinite(xyz).all(axis=1)
    xyz, obs, inl = xyz[ok], obs[ok], inl[ok]
    score = inl.sum(axis=1) / max(tomo.n_tilts, 1)
    tracks = _tracks(tomo.proj, xyz, obs, np.where(np.isfinite(obs[..., 0]), 1.0, np.nan))
    msg = f"{tomo.name}: {xyz.shape[0]} beads from IMOD model {fid}"
    if xyz.shape[0] == 0:
        msg = f"{tomo.name}: the IMOD model {fid} has no usable bead track; wrote an empty fiducials file"
    return FiducialResult(xyz=xyz, score=score, tracks=tracks, message=msg)


def run_find_fiducials(
    tomo_star: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: FiducialParams = FiducialParams(),
    names: Sequence[str] | None = None,
) -> TomogramSet:
    """Step API: fiducials for the selected tomograms -> ``out_dir/tomograms.star`` + side files.

    Writes ``out_dir/fiducials_<name>.star`` (RELION) and ``out_dir/tracks_<name>.star`` for
    every selected tomogram and links them in the global table (rlnTomoFiducialsStarFile, path
    relative to the working directory). A tomogram without beads gets empty, valid files and a
    warning naming it.
    """
    tset = read_tomogram_set(tomo_star)
    refuse_output_dir_over_inputs(out_dir, tomo_star, tomogram_set_inputs(tset))
    if names is not None:
        unknown = [n for n in names if n not in tset.names]
        if unknown:
            raise ConfigError(
                f"tomogram(s) {', '.join(unknown)} not in {tomo_star} (have {', '.join(tset.names)})"
            )
        selected = [tset[n] for n in names]
    else:
        selected = list(tset)
    log.info(
        "find-fiducials: %d tomogram(s), %d thread(s), device %s",
        len(selected), params.threads, params.device,
    )
    out = Path(out_dir)
    done: list[Tomogram] = []
    with OutputTransaction(out) as txn:  # all outputs or none (issue #11 items 2, 8, 14)
        for tomo in selected:
            # NaN / inf frames are refused by the detection pass, which reads every pixel once
            stack = read_stack(Path(tomo.tilt_series), check_finite=False)
            if params.source == "imod":
                res = fiducials_from_imod(tomo, params, (stack.shape[2], stack.shape[1]))
            else:
                res = find_fiducials(stack, tomo, params)
            fid_path = out / fiducials_filename(tomo.name)
            write_fiducials(txn.stage(fid_path), res.xyz, tomo.pixel_size)
            write_tracks(
                txn.stage(tracks_path_for(fid_path)),
                res.tracks,
                beads=bead_table(res.radius_px, res.anisotropy, res.score, tomo.pixel_size),
            )
            if res.xyz.shape[0] == 0:
                log.warning(res.message)
            else:
                log.info(res.message)
            done.append(tomo.replace(extra={"rlnTomoFiducialsStarFile": star_path(fid_path)}))
        result = TomogramSet(tuple(done))
        write_tomogram_set(txn.stage(out / "tomograms.star", last=True), result)
    return result
