"""Training labels completed by the picker's own confident picks (issue 10,
a lever): the expert labels of the 4 training micrographs plus every pick at
or above --min-score that lies farther than a particle radius from every
label and outside the unlabelled border (evaluate.BORDER), written as one
CSV per micrograph (x, y, diameter) for `run_cryoprune.py --coords`.

The audit (label_audit.py) finds particles among the false positives that no
label marks; if the training micrographs miss particles in the same way, the
picker learns some particles as background. Retraining on the completed
labels measures what that costs.

    .venv/bin/python benchmarks/picking/complete_labels.py \\
        --picks benchmarks/work/picking/strips_area/cryoprune_none/picks \\
        --min-score 0.5 --out benchmarks/work/picking/completed_labels
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

DIAMETER = evaluate.DIAMETER


def unlabelled_picks(picks, labels, min_score):
    """The picks at or above `min_score` away from every label and the border."""
    picks = picks[picks[:, 2] >= min_score]
    far = np.array([not near for near in
                    cKDTree(labels).query_ball_point(picks[:, :2], DIAMETER / 2)], dtype=bool)
    low, high = evaluate.BORDER, evaluate.MICROGRAPH_SIZE - evaluate.BORDER
    inside = np.all((picks[:, :2] >= low) & (picks[:, :2] <= high), axis=1)
    return picks[far & inside]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--picks", required=True, help="picks folder of run_cryoprune.py")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--out", required=True, help="folder for the completed labels")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    added = {}
    for path in evaluate.split()[0]:
        stem = evaluate.stem(path)
        labels = evaluate.read_labels(stem)
        extra = unlabelled_picks(evaluate.read_picks(args.picks, stem), labels, args.min_score)
        added[stem] = {"labels": len(labels), "added": len(extra)}
        with open(os.path.join(args.out, stem + ".csv"), "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("x", "y", "diameter"))
            writer.writerows((round(x), round(y), DIAMETER)
                             for x, y in np.vstack([labels, extra[:, :2]]))
    print(json.dumps(added, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
