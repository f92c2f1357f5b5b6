"""How alike the views of each simulated set are: the aligned correlation of
every pair of clean views (`refine.average_similarity`, the refinement's
search at its defaults), median and largest per set.

    python benchmarks/classification/view_similarity.py \
        --out benchmarks/classification/results/view_similarity.json
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_simulated import ASPIRE_SETS, SETS, simulated  # noqa: E402
from cryoprune_scipion.engine import refine  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", nargs="+", default=["snr0.05", "aspire_snr0.05"],
                        choices=list(SETS) + list(ASPIRE_SETS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.sets:
        clean = simulated(name, 20, 0)[3]
        similarity = refine.average_similarity(torch.as_tensor(clean, dtype=torch.float32),
                                               refine.RefinementSettings())
        pairs = similarity[np.triu_indices(len(clean), 1)]
        results[name] = {"median": float(np.median(pairs)), "largest": float(pairs.max())}
        print(name, results[name], flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
