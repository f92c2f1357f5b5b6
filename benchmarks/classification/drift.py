"""Why the refinement centres its class averages: after every pass, the
accuracy, the mean shift of the particles and how far the averages' centres
of mass lie from the box centre, with centring (the engine) and without it
(`refine.centred` replaced by the identity, the refinement before 0.2.0),
from a start kept by `duplicate_test.py starts`.

    nice -n 10 python benchmarks/classification/drift.py \\
        --start benchmarks/work/starts/snr0.05_seed0.npz --passes 12 \\
        --out benchmarks/classification/results/drift.json
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from duplicate_test import K  # noqa: E402
from cryoprune_scipion.engine import refine  # noqa: E402
from cryoprune_scipion.engine.metrics import clustering_accuracy  # noqa: E402


def centre_distances(references):
    """Distance (px) of each average's centre of mass (of its square) from
    the box centre."""
    energy = np.asarray(references) ** 2
    rows, cols = np.indices(energy.shape[-2:]) - (energy.shape[-1] - 1) / 2
    total = energy.sum(axis=(-2, -1))
    return np.hypot((energy * cols).sum(axis=(-2, -1)) / total,
                    (energy * rows).sum(axis=(-2, -1)) / total)


def trace(start, passes, centring):
    """Per pass: accuracy, mean |shift| (px), mean and largest distance of
    the averages from the centre (measured before the merges of that pass)."""
    passes_seen = []
    merge, centred = refine._merge_duplicates, refine.centred

    def record(working, labels, angles, shifts, references, *args, **kwargs):
        distances = centre_distances(references.cpu().numpy())
        passes_seen.append({"accuracy": clustering_accuracy(start["truth"], labels),
                            "mean_abs_shift": float(np.abs(shifts).mean()),
                            "centre_mean": float(distances.mean()),
                            "centre_max": float(distances.max())})
        return merge(working, labels, angles, shifts, references, *args, **kwargs)
    refine._merge_duplicates = record
    if not centring:
        refine.centred = lambda references, size: references
    try:
        settings = refine.RefinementSettings(passes=passes)  # the defaults otherwise
        result = refine.refine(start["working"], start["labels"], K, settings)
    finally:
        refine._merge_duplicates, refine.centred = merge, centred
    for record_, history in zip(passes_seen, result.history):
        record_.update(changed=history["changed"], mean_correlation=history["mean_correlation"])
    return {"final_accuracy": clustering_accuracy(start["truth"], result.labels),
            "passes": passes_seen}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", required=True)
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = dict(np.load(args.start))
    results = {"start": os.path.basename(args.start), "passes": args.passes}
    for name, centring in (("centred", True), ("uncentred", False)):
        results[name] = trace(start, args.passes, centring)
        print(name, json.dumps(results[name]["final_accuracy"]), flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
