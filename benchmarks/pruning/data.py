"""Labelled windows for the pruning benchmark.

Real: EMPIAR-10017 beta-galactosidase (`shared/data/betagal_empiar10017`),
160 px windows (particle diameter 108 px) downsampled to 64 px:
  particle    at every labelled centre;
  background  random centres at least one diameter from every label and
              150 px from the micrograph border;
  edge        random centres in the 100 px band of padding artefacts along
              the border (windows cross the edge, padded with the mean);
  offcentre   a labelled centre shifted by half a particle (54 px), kept
              only if no other label lies within 40 px.
Simulated windows come from the engine (`engine.base_pruner.simulated_windows`),
which makes them for the plugin's base pruner.
"""
import os

import numpy as np
from scipy.spatial import cKDTree

from cryoprune_scipion.engine.io import read_coordinates, read_micrograph
from cryoprune_scipion.engine.windows import extract_windows

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                    "betagal_empiar10017")
REAL_CLASSES = ["particle", "background", "edge", "offcentre"]
BOX, DIAMETER, EDGE_BAND = 160, 108, 100


def downsample(windows, size):
    import torch
    import torch.nn.functional as F
    batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(1)
    return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[:, 0].numpy()


def micrograph_names(data=DATA):
    return sorted(os.path.splitext(n)[0] for n in os.listdir(os.path.join(data, "micrographs")))


def real_centres(labels, shape, per_class, rng):
    """Window centres of each class on one micrograph."""
    rows, cols = shape
    tree = cKDTree(labels)
    chosen = {"particle": labels[rng.permutation(len(labels))[:per_class]]}
    background = []
    while len(background) < per_class:
        xy = rng.uniform([150, 150], [cols - 150, rows - 150], size=(200, 2))
        far = tree.query(xy)[0] > DIAMETER
        background.extend(xy[far][:per_class - len(background)])
    chosen["background"] = np.array(background)
    side = rng.integers(0, 4, per_class)
    depth = rng.uniform(0, EDGE_BAND, per_class)
    along = rng.uniform(0, 1, per_class)
    chosen["edge"] = np.stack([np.select([side == 0, side == 1], [depth, cols - 1 - depth],
                                         along * cols),
                               np.select([side == 2, side == 3], [depth, rows - 1 - depth],
                                         along * rows)], axis=1)
    offcentre = []
    for centre in labels[rng.permutation(len(labels))]:
        angle = rng.uniform(0, 2 * np.pi)
        xy = centre + DIAMETER / 2 * np.array([np.cos(angle), np.sin(angle)])
        if tree.query(xy)[0] >= 40 and len(offcentre) < per_class:
            offcentre.append(xy)
    chosen["offcentre"] = np.array(offcentre)
    return chosen


def real_windows(names, per_class, size=64, seed=0, data=DATA, box=BOX):
    """{class: (n, size, size) windows of `box` micrograph pixels} from the
    given micrographs."""
    rng = np.random.default_rng(seed)
    out = {name: [] for name in REAL_CLASSES}
    for name in names:
        micrograph = read_micrograph(os.path.join(data, "micrographs", name + ".jpg"))
        rows = read_coordinates(os.path.join(data, "coordinates", name + ".csv"))
        labels = np.array([[r["x"], r["y"]] for r in rows])
        for cls, centres in real_centres(labels, micrograph.shape, per_class, rng).items():
            windows, _ = extract_windows(micrograph, centres, box)
            out[cls].append(downsample(windows, size))
    return {cls: np.concatenate(w) for cls, w in out.items()}

