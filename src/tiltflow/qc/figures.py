"""The figures of a tomogram's QC page: key, title, caption and file name (no heavy imports:
the workflow reads this at parse time to declare and register every figure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    key: str
    title: str
    caption: str


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "beads",
        "Beads on the first-exposed tilt",
        "The tilt acquired first (lowest dose), band-passed to the bead size. Yellow +: bead "
        "detected; red circle: 3D bead projected with the imported IMOD alignment; cyan circle: "
        "projected with the refined alignment. Right: three beads enlarged.",
    ),
    FigureSpec(
        "gallery",
        "Bead gallery",
        "A few beads (rows, worst residual first) across the tilt range (columns), band-passed; "
        "each crop is centred on the detected bead, the cyan circle is the refined projection.",
    ),
    FigureSpec(
        "residuals",
        "Residual per tilt and per bead",
        "Mean distance between detected and projected bead, with the imported (grey) and the "
        "refined (blue) alignment, on a log axis; the red line is the flag threshold.",
    ),
    FigureSpec(
        "quiver",
        "Residual vectors per tilt",
        "Detected minus projected position of every bead after refinement, magnified (key "
        "arrow); one panel per tilt, the frame of the image. A pattern (all arrows alike, a "
        "swirl) means an alignment error the model does not capture; random arrows are noise.",
    ),
    FigureSpec(
        "changes",
        "Refined − imported alignment per tilt",
        "How much refinement changed each tilt: tilt angle, in-plane rotation, shifts and "
        "magnification, each on its own axis with its unit.",
    ),
    FigureSpec(
        "coverage",
        "Bead × tilt coverage",
        "Each cell is one bead on one tilt: coloured by its residual after refinement, grey "
        "where the bead was not detected, white where it projects outside the image, red where "
        "the detection was rejected as an outlier.",
    ),
    FigureSpec(
        "sideview",
        "Side view of the 3D beads and the ice",
        "Refined 3D bead positions seen along the tilt axis and across it, with the two ice "
        "surfaces (planes fitted to the beads, perpendicular to the fitted ice normal), the "
        "normal and the tomogram box.",
    ),
    FigureSpec(
        "ice",
        "Ice fit (Beer–Lambert)",
        "Mean intensity per unit dose against the path length through the ice, log axis (the "
        "model is a straight line); residuals below.",
    ),
    FigureSpec(
        "scale",
        "Scale factor per tilt",
        "rlnCtfScalefactor written to the final set: the transmitted fraction of each tilt "
        "relative to the zero tilt.",
    ),
    FigureSpec(
        "truth",
        "Recovered against the simulator's truth",
        "Bundled example only: distance of the model's projected beads from the true bead "
        "positions, and the tilt-angle error, with the imported and the refined alignment.",
    ),
)

FIGURE_KEYS: tuple[str, ...] = tuple(f.key for f in FIGURES)

#: figures that are mostly a grey-scale image: JPEG (a third of a palette PNG's size)
JPEG_FIGURES: frozenset[str] = frozenset({"beads", "gallery"})


def figure_filename(key: str) -> str:
    return f"{key}.jpg" if key in JPEG_FIGURES else f"{key}.png"
