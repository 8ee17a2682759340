"""``tiltflow simulate``: write synthetic IMOD projects with known truth + a RELION 4 import STAR.

Parameters come from the :class:`~tiltflow.simulate.SimulationParams` defaults, then a
``--preset`` (:data:`tiltflow.simulate.params.PRESETS`), then a ``--config`` YAML/JSON dict of
them, then the individual flags (flags win).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from tiltflow.errors import ConfigError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _size(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        vals = tuple(int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W,H or N, got {text!r}") from None
    if len(vals) == 1:
        return (vals[0], vals[0])
    if len(vals) != 2:
        raise argparse.ArgumentTypeError(f"expected W,H or N, got {text!r}")
    return (vals[0], vals[1])


#: command-line flag -> (SimulationParams field, argparse type, help)
FLAGS: dict[str, tuple[str, Any, str]] = {
    "--size": ("raw_size", _size, "raw stack size W,H (or N for square)"),
    "--angpix": ("pixel_size", float, "pixel size in Å"),
    "--tilt-min": ("tilt_min", float, "lowest tilt angle (deg)"),
    "--tilt-max": ("tilt_max", float, "highest tilt angle (deg)"),
    "--tilt-step": ("tilt_step", float, "tilt increment (deg)"),
    "--scheme": ("scheme", str, "dose-symmetric, bidirectional or unidirectional"),
    "--dose": ("dose_per_tilt", float, "mean dose per tilt (e/Å²)"),
    "--dose-profile": ("dose_profile", str, "equal or cosine"),
    "--beads": ("n_beads", int, "number of gold beads"),
    "--bead-radius": ("bead_radius_A", float, "bead radius (Å)"),
    "--thickness": ("thickness_px", int, "tilt.com THICKNESS (px)"),
    "--ice": ("ice_thickness_nm", float, "ice thickness (nm)"),
    "--mfp": ("mean_free_path_nm", float, "inelastic mean free path (nm)"),
    "--tilt-axis": ("tilt_axis_deg", float, "tilt-axis angle (deg, CCW from the image Y axis)"),
    "--perturb-tilt": ("perturb_tilt_deg", float, "max error of the written tilt angles (deg)"),
    "--perturb-rotation": (
        "perturb_rotation_deg",
        float,
        "max error of the written .xf rotation (deg)",
    ),
    "--perturb-shift": ("perturb_shift_px", float, "max error of the written .xf shifts (px)"),
    "--perturb-mag": ("perturb_mag", float, "max relative magnification error of the written .xf"),
    "--exclude": (
        "excluded_views",
        _int_list,
        "1-based views for tilt.com EXCLUDELIST, comma-separated",
    ),
    # realism (all off by default; see --preset)
    "--hand": ("hand", float, "rlnTomoHand of the phase-contrast defocus gradient (+1 or -1)"),
    "--specimen-rms": (
        "specimen_phase_rms",
        float,
        "RMS phase (rad) of a weak random specimen in the ice (Thon rings)",
    ),
    "--carbon": ("carbon_thickness_nm", float, "carbon film thickness (nm) with a straight edge"),
    "--hot-pixels": ("n_hot_pixels", int, "number of hot pixels"),
    "--xrays": ("xrays_per_view", float, "mean number of X-ray spikes per view"),
    "--drift-blur": ("drift_blur_px", float, "motion blur (px) of one view"),
    "--grid-bar": (
        "grid_bar_cover",
        float,
        "fraction of the highest tilt shadowed by a grid bar",
    ),
    "--tilt-offset": (
        "tilt_offset_deg",
        float,
        "offset (deg) of the .tlt from the nominal order-list / mdoc angles",
    ),
    "--edge-beads": ("n_edge_beads", int, "extra beads across the field edge"),
    "--bead-clusters": ("n_bead_clusters", int, "clusters of 2-3 touching beads"),
    "--small-beads": ("n_small_beads", int, "extra small beads (small_bead_radius_A)"),
}


def _preset_epilog() -> str:
    from tiltflow.simulate.params import PRESET_HELP, PRESETS

    lines = ["presets (--preset NAME; --config and the flags override them):"]
    for name, text in PRESET_HELP.items():
        keys = ", ".join(f"{k}={v}" for k, v in PRESETS[name].items()) or "no changes"
        lines += textwrap.wrap(
            text, 78, initial_indent=f"  {name:<11} ", subsequent_indent=" " * 14
        )
        lines += textwrap.wrap(
            f"[{keys}]", 78, initial_indent=" " * 14, subsequent_indent=" " * 15
        )
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write synthetic IMOD projects with known truth",
        description="Simulate gold-bead tilt series through tilted ice and write one IMOD project per "
        "tilt series (stack, .xf, .tlt, newst.com, tilt.com, .defocus, order list, .mdoc, truth.json) "
        "plus DIR/import.star for import-imod. Paths in import.star are relative to the current "
        "directory: run from the project directory. Parameters: the defaults, then --preset, then "
        "--config, then the flags.",
        epilog=_preset_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="realism preset: clean (default), phase, hot, drift_grid, clutter, carbon, "
        "beads_hard or all (see below)",
    )
    p.add_argument("--o", required=True, help="output directory")
    p.add_argument(
        "--n", type=int, default=None, help="number of tilt series (default 1, or len(--names))"
    )
    p.add_argument(
        "--names",
        default=None,
        help="comma-separated tilt-series names (default TS_01, TS_02, ...)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument(
        "--config", default=None, help="YAML or JSON file holding a dict of simulation parameters"
    )
    for flag, (field, typ, help_text) in FLAGS.items():
        p.add_argument(flag, dest=field, type=typ, default=None, help=help_text)
    p.add_argument(
        "--flipYZ",
        dest="flip_yz",
        action="store_true",
        default=None,
        help="truth for --flipYZ import",
    )
    p.add_argument(
        "--flipZ",
        dest="flip_z",
        action="store_true",
        default=None,
        help="truth for --flipYZ --flipZ",
    )
    p.add_argument(
        "--no-noise", dest="noise", action="store_false", default=None, help="no Poisson noise"
    )
    p.add_argument(
        "--phase",
        dest="phase_contrast",
        action="store_true",
        default=None,
        help="phase-contrast image formation (CTF, Fresnel fringes)",
    )
    p.set_defaults(func=run)


def load_config(path: str) -> dict[str, Any]:
    """Read a YAML/JSON dict of simulation parameters."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"simulate: config file {p} not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"simulate: cannot parse {p}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"simulate: {p} must hold a mapping of simulation parameters")
    return data


def resolve_names(n: int | None, names: str | None) -> list[str]:
    """Tilt-series names from --names / --n."""
    if names:
        out = [s.strip() for s in names.split(",") if s.strip()]
        if n is not None and n != len(out):
            raise ConfigError(f"simulate: --n {n} but {len(out)} names given")
        return out
    count = 1 if n is None else n
    if count < 1:
        raise ConfigError("simulate: --n must be >= 1")
    return [f"TS_{i + 1:02d}" for i in range(count)]


def run(args: argparse.Namespace) -> None:
    from tiltflow.io.star import refuse_whitespace
    from tiltflow.simulate import SimulationParams, simulate_dataset
    from tiltflow.simulate.params import preset_params

    # the project's paths go into DIR/import.star: refuse before anything is written
    refuse_whitespace(args.o, "simulate: output directory (--o)")

    d: dict[str, Any] = preset_params(args.preset) if args.preset else {}
    if args.config:
        d.update(load_config(args.config))
    flags = [f for f, _, _ in FLAGS.values()]
    for field in flags + ["flip_yz", "flip_z", "noise", "phase_contrast", "seed"]:
        v = getattr(args, field)
        if v is not None:
            d[field] = list(v) if isinstance(v, tuple) else v
    if d.get("flip_z") and "flip_yz" not in d:
        d["flip_yz"] = True
    params = SimulationParams.from_dict(d)
    names = resolve_names(args.n, args.names)
    star = simulate_dataset(params, Path(args.o), names)
    print(f"tiltflow simulate: wrote {len(names)} tilt series and {star}")
