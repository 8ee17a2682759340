"""Benchmark of fiducial finding on the standard case: 61 tilts of 1024x1024 at 8 Å/px, 40 beads.

Prints the wall time and peak memory of (a) the floor: reading the stack once from disk, and
(b) fiducial finding on that stack (detection + association + triangulation), plus the scaling
with the number of pixels (half-size case). Usage::

    python benchmarks/bench_fiducials.py [--threads N] [--device cpu|gpu|auto] [--no-scaling]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from tiltflow.fiducials import FiducialParams, find_fiducials
from tiltflow.simulate import SimulationParams, simulate_tilt_series


def _read(path: Path) -> np.ndarray:
    try:
        from tiltflow.io.mrc import read_stack
    except ImportError:  # pragma: no cover
        import mrcfile

        with mrcfile.open(path, permissive=True) as m:
            return np.asarray(m.data, dtype=np.float32)
    return read_stack(path)


def _write(path: Path, data: np.ndarray, px: float) -> None:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = px


def _touch(a: np.ndarray) -> np.ndarray:
    """Make sure every byte of the stack was really read (memory-mapped readers are lazy)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    float(a.sum(dtype=np.float64))
    return a


def _timed(fn, *args, **kw):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


def run_case(
    size: int, n_beads: int, threads: int, device: str
) -> tuple[float, float, float, float, int]:
    params = SimulationParams(
        raw_size=(size, size),
        pixel_size=8.0,
        tilt_min=-60,
        tilt_max=60,
        tilt_step=2.0,
        n_beads=n_beads,
        dose_per_tilt=2.0,
        seed=42,
    )
    sim = simulate_tilt_series(params)
    tomo = sim.tomogram(perturbed=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ts.mrc"
        _write(path, sim.kept_stack(), params.pixel_size)
        stack, t_read, m_read = _timed(lambda p: _touch(_read(p)), path)
    fp = FiducialParams(threads=threads, device=device)
    res, t_fid, m_fid = _timed(find_fiducials, stack, tomo, fp)
    return t_read, m_read, t_fid, m_fid, res.xyz.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-scaling", action="store_true")
    a = ap.parse_args()
    mib = 1024.0**2
    t_read, m_read, t_fid, m_fid, n = run_case(1024, 40, a.threads, a.device)
    print("standard case: 61 tilts x 1024x1024 @ 8 Å/px, 40 beads")
    print(f"  floor (read stack once): {t_read:7.3f} s   peak {m_read / mib:8.1f} MiB (traced)")
    print(
        f"  find_fiducials:          {t_fid:7.3f} s   peak {m_fid / mib:8.1f} MiB (traced)   beads found: {n}"
    )
    print(
        f"  ratio to floor: {t_fid / max(t_read, 1e-9):.1f}x; process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if not a.no_scaling:
        _, _, t_half, _, n2 = run_case(512, 20, a.threads, a.device)
        print(
            f"  scaling: 512x512 (1/4 pixels, 20 beads) {t_half:.3f} s -> per-pixel cost ratio {t_fid / (4 * t_half):.2f} (1.0 = linear)"
        )


if __name__ == "__main__":
    main()
