"""rlnTomoHand measured from the tilt images (issue #15).

RELION 4 adds ``hand · px · (depth − depth(centre))`` to the defocus of every point; the local
defocus of strips of tilted images against the depth predicted from the projection matrices has
slope ±1, and its sign is the hand.

Public API:

- :func:`find_hand` (pure core: one tomogram + stack -> :class:`HandResult`),
- :func:`run_find_hand` (file level, used by the CLI verb and the workflow rule),
- :class:`HandParams` (settings, ``from_dict``),
- :func:`apply_result`, :func:`write_hand_star`, :func:`plot_hand`, :func:`render_hand_figure`.
"""

from typing import TYPE_CHECKING

from tiltflow._lazy import lazy_exports

if TYPE_CHECKING:
    from tiltflow.hand.core import (
        STATUS_DETERMINED,
        STATUS_UNDETERMINED,
        HandResult,
        apply_result,
        find_hand,
    )
    from tiltflow.hand.params import HandParams
    from tiltflow.hand.step import (
        plot_hand,
        render_hand_figure,
        run_find_hand,
        write_hand_star,
    )

_EXPORTS = {
    "STATUS_DETERMINED": "tiltflow.hand.core",
    "STATUS_UNDETERMINED": "tiltflow.hand.core",
    "HandResult": "tiltflow.hand.core",
    "apply_result": "tiltflow.hand.core",
    "find_hand": "tiltflow.hand.core",
    "HandParams": "tiltflow.hand.params",
    "plot_hand": "tiltflow.hand.step",
    "render_hand_figure": "tiltflow.hand.step",
    "run_find_hand": "tiltflow.hand.step",
    "write_hand_star": "tiltflow.hand.step",
}

__all__ = [
    "STATUS_DETERMINED",
    "STATUS_UNDETERMINED",
    "HandParams",
    "HandResult",
    "apply_result",
    "find_hand",
    "plot_hand",
    "render_hand_figure",
    "run_find_hand",
    "write_hand_star",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
