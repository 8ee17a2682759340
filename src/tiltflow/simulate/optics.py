"""Electron optics of the phase-contrast renderer: wavelength, interaction constant, χ(k).

Conventions (RELION's CTF): defocus ``Δf`` in Å, positive = underfocus; astigmatism by
``Δf(θ) = (U + V)/2 + (U - V)/2 · cos(2(θ - angle))`` with θ the azimuth of the spatial
frequency in the image (x towards y) and ``angle`` the rlnDefocusAngle;
``χ(k) = π λ Δf(θ) k² - π/2 Cs λ³ k⁴``. The wave behind a specimen, ``exp(i φ - a)`` (phase
``φ = σ V t`` advanced by a positive potential, absorption ``a``), is imaged by multiplying its
spectrum with ``exp(+i χ)``; the intensity of a weak object then has the spectrum
``-2 (Φ sin χ + A cos χ)``, i.e. the CTF ``-sin(χ + asin(Q))`` for ``A = Φ · Q/√(1-Q²)``:
positive potentials are dark in underfocus, and edges get a bright Fresnel fringe outside.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

#: electron rest energy (eV)
_MC2_EV = 510998.95


def wavelength_A(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å) at ``voltage_kv`` (0.019687 Å at 300 kV)."""
    v = voltage_kv * 1e3
    return 12.2642598 / math.sqrt(v * (1.0 + v / (2.0 * _MC2_EV)))


def interaction_constant(voltage_kv: float) -> float:
    """σ (rad per V·Å): phase of a potential V over a path t is σ V t (6.5e-4 at 300 kV)."""
    v = voltage_kv * 1e3
    lam = wavelength_A(voltage_kv)
    return 2.0 * math.pi / (lam * v) * (_MC2_EV + v) / (2.0 * _MC2_EV + v)


def amplitude_ratio(q: float) -> float:
    """Absorption per unit phase ``w = Q/√(1-Q²)`` of a weak object with amplitude contrast Q."""
    return q / math.sqrt(1.0 - q * q)


def frequency_grid(shape: tuple[int, int], pixel_size: float) -> tuple[F64, F64]:
    """``(k², θ)`` of the FFT grid of an image of ``shape`` (h, w): |k|² in Å⁻², azimuth."""
    h, w = shape
    ky = np.fft.fftfreq(h, d=pixel_size)[:, None]
    kx = np.fft.fftfreq(w, d=pixel_size)[None, :]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(np.broadcast_to(ky, k2.shape), np.broadcast_to(kx, k2.shape))
    return k2, theta


def chi(
    k2: F64,
    theta: F64,
    defocus_u: float,
    defocus_v: float,
    angle_deg: float,
    voltage_kv: float,
    cs_mm: float,
) -> F64:
    """χ(k) (rad) for RELION's defocus U, V (Å), angle (deg), voltage and Cs."""
    lam = wavelength_A(voltage_kv)
    cs = cs_mm * 1e7
    dmean = 0.5 * (defocus_u + defocus_v)
    dast = 0.5 * (defocus_u - defocus_v)
    df = dmean + dast * np.cos(2.0 * (theta - np.deg2rad(angle_deg)))
    return np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
