"""Ensembles of trained pickers (issue 10, a lever beyond the issue's
list): the picks of two or more pickers on the beta-galactosidase
micrographs fused as the test-time copies of one picker are
(`picking.fuse_copies`: picks within a quarter box are one particle, scored
by the mean over the pickers of its best score there, 0 where a picker
missed it), then scored like the other rows. No training and no picking:
it reads the picks folders that run_cryoprune.py wrote (each picked at
confidence 0.01 with 4 test-time copies, so each picker's scores are
already its 4-copy means).

    python benchmarks/picking/ensemble.py --name b8+b8s1 \\
        --picks benchmarks/work/picking/strips_area/cryoprune_none/picks \\
                benchmarks/work/picking/seed1/cryoprune_none/picks \\
        --out benchmarks/picking/results_ensemble.json

Writes the fused picks under benchmarks/work/picking/ensemble/NAME and adds
row NAME to --out: the test figures at the CLI's threshold 0.25 and at the
threshold that maximises F1 on the 4 training micrographs.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import error_analysis  # noqa: E402
import evaluate  # noqa: E402
from run_cryoprune import DEFAULT_THRESHOLD  # noqa: E402

from cryoprune_scipion.engine.picking import SAME_PARTICLE, fuse_copies  # noqa: E402

BOX = 128  # train-picker --box of every beta-galactosidase row


def fuse(folders, out):
    for path in evaluate.micrograph_paths():
        name = evaluate.stem(path)
        found = [(p[:, :2], p[:, 2], np.zeros(len(p), dtype=int))
                 for p in (evaluate.read_picks(f, name) for f in folders)]
        centres, scores, _ = fuse_copies(found, SAME_PARTICLE * BOX)
        error_analysis.write_picks(out, name, np.column_stack([centres, scores]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--picks", nargs="+", required=True, help="picks folders")
    parser.add_argument("--out", required=True, help="JSON result")
    args = parser.parse_args()
    work = os.path.join("benchmarks", "work", "picking", "ensemble", args.name)
    fuse(args.picks, work)
    train, test = ([evaluate.stem(p) for p in paths] for paths in evaluate.split())
    row = evaluate.evaluate(work, test, DEFAULT_THRESHOLD)
    threshold, train_figures = evaluate.best_threshold(work, train)
    tuned = evaluate.evaluate(work, test, threshold)
    row.update({"pickers": args.picks, "at_threshold_chosen_on_training_micrographs": {
        "threshold": round(threshold, 4), "train_figures_at_27px": train_figures,
        "at_27px": tuned["at_27px"], "at_54px": tuned["at_54px"]}})
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    results[args.name] = row
    evaluate.save_result(results, args.out)
    print(args.name, json.dumps({k: row["at_27px"][k] for k in
                                 ("precision", "recall", "f1", "average_precision")}),
          "chosen", threshold, tuned["at_27px"]["f1"])


if __name__ == "__main__":
    main()
