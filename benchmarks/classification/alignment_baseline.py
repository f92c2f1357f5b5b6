"""Reference-free alignment-based 2D classification, written for the
benchmark only (what a user would run instead: RELION/Xmipp-style iterative
multi-reference alignment from random seeds).

Seeds: K particles drawn at random, low-passed. Each iteration aligns every
particle to every class average (rotation grid and shift window, the FFT
correlation of `refine.Search`), assigns it to the best match ("kmeans") or
weighs it over the classes by maximum-likelihood posteriors ("ml"), and
averages, centred as the plugin's (`refine.centred`). An empty class takes a
random particle. No reseeding by splitting, no contrastive start: that is
the difference from the plugin.
"""
import numpy as np
import torch

from cryoprune_scipion.engine import alignment
from cryoprune_scipion.engine.refine import Search, centred
from cryoprune_scipion.engine.windows import fourier_crop


def classify(images, k, seed, iterations=10, mode="kmeans", search_size=32, angle_step=6.0,
             batch=32):
    """images: (n, box, box) phase-flipped, normalised. Returns labels 0..K-1."""
    rng = np.random.default_rng(seed)
    n, box = images.shape[0], images.shape[-1]
    s = min(search_size, box)
    scale = box / s
    data = torch.as_tensor(images, dtype=torch.float32)
    references = data[rng.choice(n, k, replace=False)]
    references = alignment.apply_filter(references, alignment.lowpass_filter(box, 0.08))
    labels = np.full(n, -1)
    beta = None
    for _ in range(iterations):
        search = Search(fourier_crop(references, s), angle_step, 0.1 * s)
        sums, totals = torch.zeros(k, box, box), torch.zeros(k)
        new = np.zeros(n, dtype=int)
        best_all = np.zeros(n)
        for first in range(0, n, batch):
            x = data[first:first + batch]
            scores = search.correlations(fourier_crop(x, s))
            angles, shifts, best = search.best(scores)
            if mode == "ml" and beta is not None:
                w = torch.softmax(torch.logsumexp((beta * scores).flatten(2), -1), -1)
            else:
                w = torch.nn.functional.one_hot(best.argmax(1), k).float()
            rows = torch.arange(len(x))
            choice = w.argmax(1)
            new[first:first + len(x)] = choice.numpy()
            best_all[first:first + len(x)] = best[rows, choice].numpy()
            for c in range(k):
                take = w[:, c] > 1e-3
                if take.any():
                    aligned = alignment.untransform(x[take], angles[take, c],
                                                    shifts[take, c] * scale)
                    sums[c] += (aligned * w[take, c][:, None, None]).sum(0)
                    totals[c] += w[take, c].sum()
        a = float(np.clip(best_all.mean(), 1e-3, 0.9))
        beta = float(search.mask.sum()) * a / (1 - a * a)
        for c in range(k):
            references[c] = sums[c] / totals[c] if totals[c] > 0 else data[rng.integers(n)]
        references = centred(references, s)  # as RELION centres its class averages
        if np.mean(new != labels) < 0.005:
            labels = new
            break
        labels = new
    return labels
