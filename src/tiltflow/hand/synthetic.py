"""A small, physically faithful tilt-image generator with depth-dependent defocus (tests, benchmark).

The specimen is a thin slab (``slab_nm``) of weak-phase random potential through the tomogram
centre, perpendicular to the zero-tilt beam, made of ``n_layers`` layers. Each layer's projected
phase is a Gaussian random field with fine (amorphous, ~1 Å) texture plus a few-nm structure,
its variance growing with the path length ``1 / cos(tilt)``. Every pixel of every layer is
imaged with its own defocus, exactly as RELION 4 models it (``Tomogram::getCtf``)::

    defocus(u, v, layer) = D_view + hand · pixel_size · (depth(u, v, layer) − depth(centre))

with ``depth`` = row 2 of P applied to the layer's point seen at ``(u, v)``. This is done per
depth band: the layers' phases are split into bands of depth (linear weights between band
centres ``band_A`` apart), each band is Fourier transformed and multiplied by the astigmatic CTF
``−sin(χ + φ_ac) · exp(−B k² / 4)`` of its defocus, and the bands are summed. The image is then
``dose · px² · exp(−t / cos) · (1 + contrast)`` with Poisson noise.

Geometry follows SPEC §3 (RELION 4 matrices from an IMOD-like alignment with a tilt axis
rotated by ``tilt_axis_deg`` in the raw image and ``--flipYZ --flipZ`` by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from tiltflow.geometry import ImodGeometry, projection_matrices, tomogram_centre
from tiltflow.hand.spectra import amplitude_phase, wavelength_A
from tiltflow.io.mrc import write_stack
from tiltflow.io.tomograms import write_tomogram_set
from tiltflow.model import Tomogram, TomogramSet

F64 = NDArray[np.float64]

#: depth bands transformed at once
BAND_BATCH = 4

DEFAULT_TILTS: tuple[float, ...] = (0.0, -36.0, 36.0, -48.0, 48.0, -60.0, 60.0)


@dataclass(frozen=True)
class HandSimulation:
    """Settings of one synthetic tilt series (Å, kV, mm, e/Å², degrees)."""

    size: tuple[int, int] = (1024, 1024)
    pixel_size: float = 1.5
    tilts_deg: tuple[float, ...] = DEFAULT_TILTS
    hand: float = 1.0
    defocus_um: float = 4.0
    defocus_sd_um: float = 0.5  #: per-tilt spread of the true defocus
    astigmatism_A: float = 400.0  #: DefocusU − DefocusV
    astigmatism_angle_deg: float = 30.0
    defocus_error_A: float = 0.0  #: sd of the error of the imported (ctfplotter) defocus
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    dose: float = 3.0  #: e/Å² per tilt
    slab_nm: float = 30.0
    n_layers: int = 4
    phase_rms: float = 0.12  #: rad, fine texture of the whole slab at zero tilt
    structure_rms: float = 0.3  #: rad, few-nm structure of the whole slab at zero tilt
    structure_nm: float = 3.0
    b_factor: float = 80.0
    band_A: float | None = (
        None  #: depth-band spacing (Å); None = 0.8 / (π λ k²), k = min(Nyquist, 1/5 Å)
    )
    ice_t: float = 0.3  #: relative ice thickness (attenuation exp(−t / cos))
    tilt_axis_deg: float = 85.0
    thickness_px: int = 600
    flip_yz: bool = True
    flip_z: bool = True
    seed: int = 0
    #: tilts closer to zero than this are flat Poisson images (benchmarks: tilts not measured)
    flat_below_deg: float = 0.0
    defocus_offsets_A: tuple[float, ...] = field(default=())  #: per tilt, added to the truth only

    @property
    def n_tilts(self) -> int:
        return len(self.tilts_deg)


@dataclass(frozen=True)
class SimulatedSeries:
    """Images, the tomogram as imported (imported defocus) and the truth."""

    stack: NDArray[np.float32]  # (n, h, w)
    tomo: Tomogram
    true_defocus_u: F64
    true_defocus_v: F64
    sim: HandSimulation


def _matrices(sim: HandSimulation, tilts: F64) -> F64:
    w, h = sim.size
    geom = ImodGeometry(
        raw_size=(w, h),
        ali_size=(w, h),
        thickness=float(sim.thickness_px),
        flip_yz=sim.flip_yz,
        flip_z=sim.flip_z,
    )
    t = np.deg2rad(sim.tilt_axis_deg)
    c, s = np.cos(t), np.sin(t)
    # .xf rotating the raw image so that the tilt axis (at tilt_axis_deg from +Y) becomes +Y
    xf = np.tile([c, s, -s, c, 0.0, 0.0], (tilts.size, 1))
    return projection_matrices(geom, xf, tilts)


def _layer_depth_coeffs(p: F64, normal: F64, point: F64) -> tuple[F64, float]:
    """depth(u, v) = a·u + b·v + c + e·z of the plane point ``point + z·normal`` seen at (u, v)."""
    m = np.stack([p[0, :3], p[1, :3], normal])
    q = np.linalg.solve(m.T, p[2, :3])
    const = -q[0] * p[0, 3] - q[1] * p[1, 3] + q[2] * float(normal @ point) + p[2, 3]
    return np.array([q[0], q[1], const]), float(q[2])


def _phase_amplitude(shape: tuple[int, int], px: float, sim: HandSimulation) -> F64:
    """Fourier amplitude (rfft grid) of a unit-path-length layer: fine texture (~2 Å) plus a
    few-nm structure, each scaled to its rms phase per pixel (rad)."""
    h, w = shape
    ky = scipy.fft.fftfreq(h, d=px)[:, None]
    kx = scipy.fft.rfftfreq(w, d=px)[None, :]
    k2 = kx * kx + ky * ky
    # Gaussian correlations: fine texture sigma 1 Å, structure sigma = half its size
    fine = np.exp(-2.0 * np.pi**2 * 1.0**2 * k2)
    sigma_s = 0.5 * sim.structure_nm * 10.0
    coarse = np.exp(-2.0 * np.pi**2 * sigma_s**2 * k2)
    coarse[0, 0] = 0.0
    fine[0, 0] = 0.0
    # irfft2 of white complex noise of unit variance per component: pixel variance = 2 Σ a² / (h w)²
    norm_f = np.sqrt(2.0 * np.sum(fine**2)) / (h * w)
    norm_c = np.sqrt(2.0 * np.sum(coarse**2)) / (h * w)
    return np.asarray(
        sim.phase_rms * fine / norm_f + sim.structure_rms * coarse / norm_c, dtype=np.float64
    )


def _random_phase(
    rng: np.random.Generator, amp: F64, shape: tuple[int, int], scale: float
) -> NDArray[np.float32]:
    """One layer's projected phase (rad): complex Gaussian noise shaped by ``amp``."""
    noise = np.empty(amp.shape, dtype=np.complex64)
    noise.real = rng.standard_normal(amp.shape, dtype=np.float32)
    noise.imag = rng.standard_normal(amp.shape, dtype=np.float32)
    noise *= (amp * (scale / np.sqrt(2.0))).astype(np.float32)
    return np.asarray(scipy.fft.irfft2(noise, s=shape), dtype=np.float32)


def _add_hat_bands(
    bands: NDArray[np.float32],
    ph: NDArray[np.float32],
    alpha: float,
    beta: float,
    gamma: float,
    jmin: int,
) -> None:
    """Add ``ph`` to ``bands[j - jmin]`` with weight ``max(0, 1 − |b − j|)``, ``b = alpha u + beta v + gamma``.

    Only the columns (``|alpha| ≥ |beta|``) or rows where a band's weight can be non-zero are
    touched, so the cost is a few image passes however many bands there are.
    """
    h, w = ph.shape
    b = (
        np.float32(alpha) * np.arange(w, dtype=np.float32)[None, :]
        + np.float32(beta) * np.arange(h, dtype=np.float32)[:, None]
        + np.float32(gamma)
    )
    along_x = abs(alpha) >= abs(beta)
    a_main, a_cross, n_main, n_cross = (alpha, beta, w, h) if along_x else (beta, alpha, h, w)
    for jj in range(bands.shape[0]):
        c = jj + jmin
        if abs(a_main) < 1e-12:
            lo, hi = 0, n_main
        else:
            ends = [
                (c + e - gamma - a_cross * t) / a_main
                for e in (-1.0, 1.0)
                for t in (0.0, n_cross - 1.0)
            ]
            lo = max(int(np.floor(min(ends))), 0)
            hi = min(int(np.ceil(max(ends))) + 1, n_main)
        if hi <= lo:
            continue
        sl = (slice(None), slice(lo, hi)) if along_x else (slice(lo, hi), slice(None))
        t = b[sl] - np.float32(c)
        np.abs(t, out=t)
        np.subtract(np.float32(1.0), t, out=t)
        np.maximum(t, np.float32(0.0), out=t)
        t *= ph[sl]
        bands[jj][sl] += t


def simulate_hand_series(sim: HandSimulation, workers: int = 1) -> SimulatedSeries:
    """Simulate ``sim``: images, imported tomogram (with the imported defocus) and truth."""
    rng = np.random.default_rng(sim.seed)
    w, h = sim.size
    px = float(sim.pixel_size)
    tilts = np.asarray(sim.tilts_deg, dtype=np.float64)
    n = tilts.size
    proj = _matrices(sim, tilts)
    p0 = _matrices(sim, np.zeros(1))[0]
    if sim.flip_yz:
        size = (w, h, int(sim.thickness_px))
    else:
        size = (w, int(sim.thickness_px), h)
    centre = tomogram_centre(size)
    normal = p0[2, :3] / np.linalg.norm(p0[2, :3])
    lam = wavelength_A(sim.voltage)
    phi_ac = amplitude_phase(sim.amplitude_contrast)
    cs = sim.cs * 1e7
    k_band = min(0.5 / px, 0.2)
    band_a = sim.band_A if sim.band_A is not None else 0.8 / (np.pi * lam * k_band**2)

    true_mean = sim.defocus_um * 1e4 + rng.normal(0.0, sim.defocus_sd_um * 1e4, n)
    offsets = (
        np.asarray(sim.defocus_offsets_A, dtype=np.float64)
        if sim.defocus_offsets_A
        else np.zeros(n)
    )
    err = rng.normal(0.0, sim.defocus_error_A, n) if sim.defocus_error_A > 0 else np.zeros(n)
    du = true_mean + 0.5 * sim.astigmatism_A + offsets
    dv = true_mean - 0.5 * sim.astigmatism_A + offsets

    ky = scipy.fft.fftfreq(h, d=px)[:, None]
    kx = scipy.fft.rfftfreq(w, d=px)[None, :]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(np.broadcast_to(ky, k2.shape), np.broadcast_to(kx, k2.shape))
    env = np.exp(-0.25 * sim.b_factor * k2).astype(np.float32)
    step = np.exp(1j * np.pi * lam * band_a * k2).astype(np.complex64)
    amp = _phase_amplitude((h, w), px, sim)
    layer_z = ((np.arange(sim.n_layers) + 0.5) / sim.n_layers - 0.5) * sim.slab_nm * 10.0 / px
    stack = np.empty((n, h, w), dtype=np.float32)
    for f in range(n):
        p = proj[f]
        d_centre = float(p[2, :3] @ centre + p[2, 3])
        coef, dz = _layer_depth_coeffs(p, normal, centre)
        cos_t = max(abs(float(np.cos(np.deg2rad(tilts[f])))), 1e-3)
        counts = sim.dose * px * px * np.exp(-sim.ice_t / cos_t)
        if abs(tilts[f]) < sim.flat_below_deg:
            stack[f] = rng.poisson(counts, (h, w)).astype(np.float32)
            continue
        scale = float(np.sqrt(1.0 / cos_t / sim.n_layers))
        # defocus offset of every layer's point seen at (u, v), in units of the band spacing:
        # b = alpha u + beta v + gamma_layer (affine: the layers are parallel planes)
        k = sim.hand * px / band_a
        alpha, beta = k * coef[0], k * coef[1]
        gammas = [k * (coef[2] - d_centre + dz * z) for z in layer_z]
        corners = [alpha * u + beta * v for u in (0, w - 1) for v in (0, h - 1)]
        jmin = int(np.floor(min(corners) + min(gammas)))
        jmax = int(np.floor(max(corners) + max(gammas))) + 1
        phases = [_random_phase(rng, amp, (h, w), scale) for _ in gammas]
        mean_d = 0.5 * (du[f] + dv[f])
        d_theta = mean_d + 0.5 * (du[f] - dv[f]) * np.cos(
            2.0 * (theta - np.deg2rad(sim.astigmatism_angle_deg))
        )
        chi0 = np.pi * lam * (d_theta + jmin * band_a) * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
        z = np.exp(1j * (chi0 + phi_ac)).astype(np.complex64)
        acc = np.zeros(k2.shape, dtype=np.complex64)
        for j0 in range(jmin, jmax + 1, BAND_BATCH):  # a few bands at a time bounds the memory
            bands = np.zeros((min(BAND_BATCH, jmax + 1 - j0), h, w), dtype=np.float32)
            for g, ph in zip(gammas, phases):
                _add_hat_bands(bands, ph, alpha, beta, g, j0)
            for band in scipy.fft.rfft2(bands, axes=(1, 2), workers=workers):
                acc -= band * (z.imag * env)  # CTF = -sin(chi + phi_ac) * envelope
                z *= step
        contrast = 2.0 * scipy.fft.irfft2(acc, s=(h, w), workers=workers)
        lam_px = np.clip(counts * (1.0 + contrast), 0.0, None)
        stack[f] = rng.poisson(lam_px).astype(np.float32)

    pre = np.argsort(np.argsort(np.abs(tilts), kind="stable")) * sim.dose
    tomo = Tomogram(
        name="hand_sim",
        tilt_series="hand_sim.mrc",
        frame_count=n,
        size=size,
        hand=-1.0,  # the importer's default; the step must measure it
        optics_group="optics1",
        pixel_size=px,
        voltage=sim.voltage,
        cs=sim.cs,
        amplitude_contrast=sim.amplitude_contrast,
        fractional_dose=sim.dose,
        proj=proj,
        defocus_u=du - offsets + err,
        defocus_v=dv - offsets + err,
        defocus_angle=np.full(n, sim.astigmatism_angle_deg),
        ctf_scale=np.ones(n),
        pre_exposure=np.asarray(pre, dtype=np.float64),
    )
    return SimulatedSeries(stack, tomo, du, dv, sim)


def write_series(
    series: SimulatedSeries, out_dir: str | os.PathLike[str], name: str = "hand_sim"
) -> Path:
    """Write the stack (``<name>.mrc``) and ``tomograms.star`` into ``out_dir``; return the STAR.

    The stack path in the STAR file is relative to the current directory (RELION's convention).
    """
    from tiltflow.io.star import star_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stack = out / f"{name}.mrc"
    write_stack(stack, series.stack, series.sim.pixel_size)
    tomo = series.tomo.replace(name=name, tilt_series=star_path(stack))
    star = out / "tomograms.star"
    write_tomogram_set(star, TomogramSet((tomo,)))
    return star
