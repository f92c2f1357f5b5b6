"""Quality scores of 2D classes and their order (RELION's class ranker, in
its simplest form).

Per class: the Fourier ring correlation (FRC) between the averages of two
halves of its particles (alternate members, each half averaged with the
final alignment), the resolution where it first falls below 0.5 and below
0.143, and the mean alignment correlation of its particles (negative values
count 0). The halves share the alignment to one average, so the FRC is
optimistic (noise aligned to a reference resembles it): judge classes by
comparing them, not by the absolute figure.
"""
import dataclasses
import os

import numpy as np

from .io import InputError, write_table

ORDERS = ("size", "resolution")
SCORES_FILE = "class_scores.csv"


@dataclasses.dataclass
class ClassScore:
    particles: int
    resolution: float        # px per cycle at FRC 0.5 (Angstrom with the sampling rate)
    resolution_0143: float   # px per cycle at FRC 0.143
    mean_correlation: float
    frc: np.ndarray          # per ring 1..box/2 - 1


def frc(a, b, mask=True):
    """FRC of two images per ring 1..box/2 - 1 (ring r: frequencies whose
    radius rounds to r)."""
    box = a.shape[-1]
    if mask:
        axis = np.arange(box) - (box - 1) / 2
        radius = np.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
        window = np.clip((box / 2 - 1 - radius) / 3, 0, 1)
        a, b = a * window, b * window
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    k = np.fft.fftfreq(box) * box
    rings = np.rint(np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)).astype(int).ravel()
    n = box // 2
    cross = np.bincount(rings, (fa * fb.conj()).real.ravel(), minlength=n)[1:n]
    pa = np.bincount(rings, (np.abs(fa) ** 2).ravel(), minlength=n)[1:n]
    pb = np.bincount(rings, (np.abs(fb) ** 2).ravel(), minlength=n)[1:n]
    return cross / np.sqrt(pa * pb + 1e-30)


def resolution_at(curve, box, threshold):
    """Pixels per cycle where the FRC first falls below `threshold`
    (box / ring, linearly interpolated); 2 (Nyquist) when it never does,
    `box` when the first ring is already below."""
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return 2.0
    i = below[0]
    if i == 0:
        return float(box)
    ring = i + (curve[i - 1] - threshold) / max(curve[i - 1] - curve[i], 1e-12)  # rings 1-based
    return float(box / ring)


def score_classes(stacks, result, n_classes, device=None, ctf=None):
    """A ClassScore per class 1..K from the half-set averages."""
    from .classify2d import _average_full_size
    labels = result.labels
    half = np.zeros(len(labels), dtype=int)
    for k in range(1, n_classes + 1):
        half[np.flatnonzero(labels == k)[1::2]] = 1
    halves = _average_full_size(stacks, labels + n_classes * half, result.angles, result.shifts,
                                result.weights, 2 * n_classes, device, ctf)
    box = halves.shape[-1]
    scores = []
    for k in range(1, n_classes + 1):
        members = labels == k
        curve = frc(halves[k - 1], halves[n_classes + k - 1])
        if members.sum() < 2:
            curve = np.zeros_like(curve)
        scores.append(ClassScore(int(members.sum()), resolution_at(curve, box, 0.5),
                                 resolution_at(curve, box, 0.143),
                                 float(result.weights[members].mean()) if members.any() else 0.0,
                                 curve))
    return scores


def rank_classes(result, stacks, n_classes, order="size", device=None, ctf=None):
    """Score every class and renumber the classes: by size (class 1 the
    largest) or by resolution at FRC 0.5 (class 1 the best; ties by mean
    correlation). Sets result.scores (in the new order) and returns result."""
    if order not in ORDERS:
        raise InputError("class order %r: use one of %s" % (order, ", ".join(ORDERS)))
    scores = score_classes(stacks, result, n_classes, device, ctf)
    if order == "size":
        key = [(-s.particles, i) for i, s in enumerate(scores)]
    else:
        key = [(s.particles == 0, s.resolution, -s.mean_correlation, i)
               for i, s in enumerate(scores)]
    order_index = [k[-1] for k in sorted(key)]
    new_number = np.zeros(n_classes + 1, dtype=int)
    new_number[np.array(order_index) + 1] = np.arange(1, n_classes + 1)
    result.labels = new_number[result.labels]
    result.averages = result.averages[order_index]
    result.scores = [scores[i] for i in order_index]
    return result


def write_scores(scores, out_dir, sampling_rate=None):
    """class_scores.csv: class, particles, resolution (Angstrom at FRC 0.5
    and 0.143; pixels when the sampling rate is unknown), mean correlation."""
    scale = sampling_rate or 1.0
    write_table(os.path.join(out_dir, SCORES_FILE),
                ["class", "particles", "resolution", "resolution_0143", "mean_correlation"],
                ({"class": k, "particles": s.particles,
                  "resolution": "%.2f" % (s.resolution * scale),
                  "resolution_0143": "%.2f" % (s.resolution_0143 * scale),
                  "mean_correlation": "%.4f" % s.mean_correlation}
                 for k, s in enumerate(scores, start=1)))


def read_scores(path):
    """Rows of class_scores.csv as dicts of numbers, by class."""
    import csv
    with open(path, newline="") as f:
        return {int(r["class"]): {k: float(v) for k, v in r.items()} for r in csv.DictReader(f)}
