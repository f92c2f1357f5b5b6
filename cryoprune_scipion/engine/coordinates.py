"""Particle coordinates checked against their micrograph: centres off the
micrograph, boxes that cross its edge, and one particle listed twice.

Coordinates are (x, y) pixels of the micrograph, x the column, pixel
centres at integer values (engine.io); a centre belongs to the pixel it
rounds to, and a box is the window `windows.extract_windows` cuts.
"""
import numpy as np

# Centres this close (px) are one particle listed twice: a list appended to
# itself, or merged with a copy of itself that was rounded on export. Two
# particles cannot sit 1 px apart, so this never merges true neighbours,
# which in crowded ice touch at about a particle diameter.
DUPLICATE_RADIUS = 1.0


def sanitize_coordinates(xy, shape, box=None, whole_box=False, radius=DUPLICATE_RADIUS):
    """The usable coordinates of one micrograph of `shape` (rows, columns).

    Returns the indices kept, in input order, and the counts
    {"outside", "edge", "duplicates", "kept"}:
    - outside: the centre is in no pixel of the micrograph (or is NaN);
    - edge: with `whole_box`, the `box` px window crosses the micrograph
      edge (for extraction); without it such particles are kept, for a
      detector learns a particle cut by the edge as a particle;
    - duplicates: centres within `radius` px of an earlier kept one.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    rows, columns = shape
    column, row = np.round(xy[:, 0]), np.round(xy[:, 1])
    inside = (column >= 0) & (column < columns) & (row >= 0) & (row < rows)
    fits = inside
    if whole_box:
        left, top = column - int(box) // 2, row - int(box) // 2
        fits = inside & (left >= 0) & (top >= 0) & (left + box <= columns) & \
            (top + box <= rows)
    candidates = np.flatnonzero(fits)
    kept = candidates[~_repeats(xy[candidates], radius)]
    return kept, {"outside": int(np.count_nonzero(~inside)),
                  "edge": int(np.count_nonzero(inside & ~fits)),
                  "duplicates": len(candidates) - len(kept), "kept": len(kept)}


def _repeats(xy, radius):
    """True for each centre within `radius` of an earlier centre that is
    itself kept (the first of a group stays)."""
    from scipy.spatial import cKDTree
    repeated = np.zeros(len(xy), dtype=bool)
    if len(xy) < 2:
        return repeated
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    # Pairs (i, j), i < j, in order of i: repeated[i] is final before i's pairs.
    for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if not repeated[i]:
            repeated[j] = True
    return repeated
