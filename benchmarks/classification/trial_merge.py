"""A move tried against the settled local optimum of the refinement, not
kept: merge one of the most similar pairs of classes, split the largest,
refine two passes, and ask whether the particles' mean alignment
correlation rose (which would let the refinement keep the move).

Refines a start kept by duplicate_test.py (the defaults), then tries the
`--pairs` most similar pairs (corrected similarity) one at a time from the
settled state and writes, per pair, the correlation before and after and
the accuracy after, to --out.

    nice -n 10 python benchmarks/classification/trial_merge.py \\
        --start benchmarks/work/starts/snr0.05_seed2.npz \\
        --out benchmarks/classification/results/trial_merge.json

Measured (results/trial_merge.json): from the settled state of SNR 0.05
seed 2 (accuracy 0.863, mean correlation 0.5112) every one of the five
pairs lowers the correlation (0.502 to 0.509), also the one that raises the
accuracy to 0.915; the mean correlation cannot judge the move.
"""
import argparse
import dataclasses
import json

import numpy as np
import torch

from cryoprune_scipion.engine import alignment, refine
from cryoprune_scipion.engine.metrics import clustering_accuracy

K = 10


def reliability(working, settled, settings):
    """The half-set reliability of the settled averages, as the last pass
    measured it: even and odd members aligned and summed."""
    size = working.shape[-1]
    halves = torch.zeros(2, K, size, size)
    for k in range(K):
        members = np.flatnonzero(settled.labels == k + 1)
        aligned = alignment.untransform(
            refine._read(working, members, None),
            torch.as_tensor(settled.angles[members], dtype=torch.float32),
            torch.as_tensor(settled.shifts[members], dtype=torch.float32))
        odd = torch.as_tensor(members % 2 == 1)
        halves[0, k], halves[1, k] = aligned[~odd].sum(0), aligned[odd].sum(0)
    return refine.half_set_reliability(halves, min(settings.search_size, size))


def trial(working, settled, kept, freed, settings, passes, rng):
    labels = settled.labels.copy()
    references = torch.tensor(settled.averages)
    sizes = np.bincount(labels, minlength=K + 1)[1:]
    sizes[[kept, freed]] = 0
    largest = int(np.argmax(sizes))
    labels[labels == freed + 1] = kept + 1
    refine._split(working, labels, settled.angles, settled.shifts, references, largest, freed,
                  settings, None, rng)
    return largest, refine.refine(working, labels, K,
                                  dataclasses.replace(settings, passes=passes),
                                  references=references)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", required=True)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2, help="refinement passes of a trial")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stored = np.load(args.start)
    working, truth = stored["working"], stored["truth"]
    settings = refine.RefinementSettings()
    settled = refine.refine(working, stored["labels"], K, settings)
    similarity = np.triu(refine.duplicate_similarity(
        torch.tensor(settled.averages), reliability(working, settled, settings), settings), 1)
    result = {"start": args.start, "trial_passes": args.passes,
              "accuracy": clustering_accuracy(truth, settled.labels),
              "mean_correlation": float(settled.correlations.mean()), "trials": []}
    rng = np.random.default_rng(0)
    for flat in np.argsort(-similarity.ravel())[:args.pairs]:
        kept, freed = (int(k) for k in np.unravel_index(flat, similarity.shape))
        largest, tried = trial(working, settled, kept, freed, settings, args.passes, rng)
        result["trials"].append({
            "merged": [kept + 1, freed + 1], "similarity": float(similarity[kept, freed]),
            "split": largest + 1, "mean_correlation": float(tried.correlations.mean()),
            "accuracy": clustering_accuracy(truth, tried.labels)})
        print(result["trials"][-1], flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
