"""Fixed-radius neighbour search on a grid of cells, in numpy.

The fiducial and alignment steps need two queries on a few thousand 2D/3D points: every pair
closer than ``r`` (peak suppression, duplicate beads) and each query point's nearest point within
``r`` (picking up detections). ``scipy.spatial.cKDTree`` answers both, but importing
``scipy.spatial`` costs a step's process about 0.1 s, more than the queries. Points are binned
into cubes of side ``r``; only points in the same or adjacent cubes are compared, so the work is
linear in the number of points for the sparse sets these steps have.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def _cells(points: F64, r: float, origin: F64) -> I64:
    return np.floor((points - origin) / r).astype(np.int64)


def _keys(cells: I64, lo: I64, span: I64) -> I64:
    """One int64 per cell (row-major over the cell box ``lo .. lo + span``)."""
    key = np.zeros(cells.shape[0], np.int64)
    for k in range(cells.shape[1]):
        key = key * span[k] + (cells[:, k] - lo[k])
    return key


def _candidates(a_cells: I64, b_cells: I64, offsets: list[tuple[int, ...]]) -> tuple[I64, I64]:
    """All (i, j) with point j of ``b`` in a cell at one of ``offsets`` from point i of ``a``."""
    d = a_cells.shape[1]
    lo = np.minimum(a_cells.min(axis=0), b_cells.min(axis=0)) - 1
    span = np.maximum(a_cells.max(axis=0), b_cells.max(axis=0)) + 2 - lo
    if float(np.prod(span.astype(np.float64))) >= 2.0**62:
        raise ValueError("points spread over too many cells for the neighbour grid")
    b_keys = _keys(b_cells, lo, span)
    order = np.argsort(b_keys, kind="stable")
    sorted_keys = b_keys[order]
    out_i, out_j = [], []
    for off in offsets:
        target = _keys(a_cells + np.asarray(off, np.int64).reshape(1, d), lo, span)
        start = np.searchsorted(sorted_keys, target, side="left")
        stop = np.searchsorted(sorted_keys, target, side="right")
        count = stop - start
        total = int(count.sum())
        if total == 0:
            continue
        i = np.repeat(np.arange(a_cells.shape[0]), count)
        first = np.repeat(start - np.cumsum(count) + count, count)
        out_i.append(i)
        out_j.append(order[first + np.arange(total)])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_i), np.concatenate(out_j)


def _distance(a: F64, b: F64, chebyshev: bool) -> F64:
    diff = np.abs(a - b)
    return diff.max(axis=1) if chebyshev else np.sqrt((diff * diff).sum(axis=1))


def close_pairs(
    points: ArrayLike, r: float, chebyshev: bool = False, groups: ArrayLike | None = None
) -> I64:
    """Every pair ``(i, j)``, ``i < j``, of rows of ``points`` (n, d) at distance ``<= r``
    (Euclidean, or the largest coordinate difference with ``chebyshev``), as an (m, 2) array in
    lexicographic order; with ``groups`` (n integers, e.g. the frame of each point) only pairs
    within a group. Non-finite points have no neighbours."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"points must be (n, d), got shape {p.shape}")
    if r <= 0 or not np.isfinite(r):
        raise ValueError(f"radius must be positive and finite, got {r}")
    g = np.zeros(p.shape[0], np.int64) if groups is None else np.asarray(groups, np.int64)
    if g.shape != (p.shape[0],):
        raise ValueError(f"groups must have one entry per point, got shape {g.shape}")
    idx = np.flatnonzero(np.isfinite(p).all(axis=1))
    if idx.size < 2:
        return np.zeros((0, 2), np.int64)
    q = p[idx]
    cells = np.column_stack([g[idx], _cells(q, r, q.min(axis=0))])
    d = q.shape[1]
    # half of the neighbouring cells (the other half gives the same pairs reversed), same group
    offsets = [
        (0, *o) for o in itertools.product((-1, 0, 1), repeat=d) if o >= (0,) * d
    ]
    i, j = _candidates(cells, cells, offsets)
    keep = (i != j) & ((i < j) | np.any(cells[i] != cells[j], axis=1))
    i, j = i[keep], j[keep]
    keep = _distance(q[i], q[j], chebyshev) <= r
    a, b = idx[i[keep]], idx[j[keep]]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def nearest_within(
    points: ArrayLike,
    queries: ArrayLike,
    r: float,
    point_groups: ArrayLike | None = None,
    query_groups: ArrayLike | None = None,
) -> tuple[F64, I64]:
    """For each query (k, d): the Euclidean distance to the nearest of ``points`` (n, d) closer
    than ``r`` and its row, or ``(inf, n)`` when there is none (``cKDTree.query(k=1,
    distance_upper_bound=r)``'s convention); ties go to the lower row. With groups (one integer
    per point and per query, e.g. the tilt) only points of the query's group count."""
    p = np.asarray(points, dtype=np.float64)
    qs = np.asarray(queries, dtype=np.float64)
    if p.ndim != 2 or qs.ndim != 2 or (p.size and qs.size and p.shape[1] != qs.shape[1]):
        raise ValueError(f"points {p.shape} and queries {qs.shape} must be (n, d) and (k, d)")
    if r <= 0 or not np.isfinite(r):
        raise ValueError(f"radius must be positive and finite, got {r}")
    n, k = p.shape[0], qs.shape[0]
    pg = np.zeros(n, np.int64) if point_groups is None else np.asarray(point_groups, np.int64)
    qg = np.zeros(k, np.int64) if query_groups is None else np.asarray(query_groups, np.int64)
    if pg.shape != (n,) or qg.shape != (k,):
        raise ValueError("groups must have one entry per point and per query")
    dist = np.full(k, np.inf)
    which = np.full(k, n, dtype=np.int64)
    pi = np.flatnonzero(np.isfinite(p).all(axis=1))
    qi = np.flatnonzero(np.isfinite(qs).all(axis=1))
    if pi.size == 0 or qi.size == 0:
        return dist, which
    origin = np.minimum(p[pi].min(axis=0), qs[qi].min(axis=0))
    offsets = [(0, *o) for o in itertools.product((-1, 0, 1), repeat=p.shape[1])]
    i, j = _candidates(
        np.column_stack([qg[qi], _cells(qs[qi], r, origin)]),
        np.column_stack([pg[pi], _cells(p[pi], r, origin)]),
        offsets,
    )
    if i.size == 0:
        return dist, which
    dd = _distance(qs[qi][i], p[pi][j], chebyshev=False)
    keep = dd < r
    i, j, dd = i[keep], j[keep], dd[keep]
    # per query the smallest distance, ties to the lower point row
    order = np.lexsort((pi[j], dd, i))
    i, j, dd = i[order], j[order], dd[order]
    first = np.ones(i.size, bool)
    first[1:] = i[1:] != i[:-1]
    dist[qi[i[first]]] = dd[first]
    which[qi[i[first]]] = pi[j[first]]
    return dist, which
