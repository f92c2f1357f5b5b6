"""Score particle picks against the beta-galactosidase labels (EMPIAR-10017).

One scoring for every row of the picking benchmark: picks are matched to
labelled centres greedily by score (each label at most once) with
`cryoprune_scipion.engine.metrics`; precision, recall and F1 are given at
27 px (half a particle radius) and 54 px, and average precision over all
picks ranked by score.

Predictions are one CSV per micrograph, `<stem>.csv` with columns x, y, score
(x the column, y the row, original micrograph pixels).

    python benchmarks/picking/evaluate.py --picks DIR --threshold 0.25 --out result.json
"""
import argparse
import csv
import json
import os
import platform
import sys

import numpy as np

from cryoprune_scipion.engine.metrics import average_precision, match_picks

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from locations import BETAGAL_DIR as DATA_DIR  # noqa: E402
RADII = (27, 54)
DIAMETER = 108                      # px, the labelled particle discs
N_TRAIN = 4
# No label lies closer than 131 px to any edge of these micrographs (the band
# of padding artefacts and the particles cut by it were not labelled): picks
# there are false positives, counted apart so their share is visible.
BORDER = 131
MICROGRAPH_SIZE = 4096


def micrograph_paths(data_dir=DATA_DIR):
    folder = os.path.join(data_dir, "micrographs")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".jpg"))


def split(data_dir=DATA_DIR):
    """The fixed split: the first 4 micrographs (sorted by name) train, the last 16 test."""
    paths = micrograph_paths(data_dir)
    return paths[:N_TRAIN], paths[N_TRAIN:]


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def read_xy(path, columns=("x", "y")):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([[float(row[c]) for c in columns] for row in rows],
                    dtype=float).reshape(-1, len(columns))


def read_labels(micrograph_stem, data_dir=DATA_DIR):
    return read_xy(os.path.join(data_dir, "coordinates", micrograph_stem + ".csv"))


def read_picks(picks_dir, micrograph_stem):
    """(n, 3) array of x, y, score; a missing file means no picks."""
    path = os.path.join(picks_dir, micrograph_stem + ".csv")
    if not os.path.exists(path):
        return np.zeros((0, 3))
    return read_xy(path, ("x", "y", "score"))


def _match_all(picks_dir, stems, radius, data_dir):
    """Per micrograph: the picks, their match flags and the labels."""
    matches = []
    for name in stems:
        picks = read_picks(picks_dir, name)
        labels = read_labels(name, data_dir)
        matched = match_picks(picks[:, :2], labels, radius, scores=picks[:, 2])
        matches.append((picks, matched, labels))
    return matches


def _counts(matches, threshold):
    tp = fp = n_labels = 0
    for picks, matched, labels in matches:
        kept = picks[:, 2] >= threshold
        tp += int(matched[kept].sum())
        fp += int((~matched[kept]).sum())
        n_labels += len(labels)
    return tp, fp, n_labels - tp


def figures(tp, fp, fn):
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4)}


def _average_precision(matches):
    scores = np.concatenate([m[0][:, 2] for m in matches])
    matched = np.concatenate([m[1] for m in matches])
    n_labels = sum(len(m[2]) for m in matches)
    return round(average_precision(matched, scores, n_labels), 4)


def best_threshold(picks_dir, stems, radius=RADII[0], data_dir=DATA_DIR):
    """The score threshold that maximises F1 at `radius` on these micrographs."""
    matches = _match_all(picks_dir, stems, radius, data_dir)
    scores = np.unique(np.concatenate([m[0][:, 2] for m in matches]))
    best = max(scores, key=lambda t: figures(*_counts(matches, t))["f1"])
    return float(best), figures(*_counts(matches, best))


def _border_false_positives(matches, threshold, size=MICROGRAPH_SIZE):
    """False positives whose centre lies in the unlabelled border."""
    count = 0
    for picks, matched, _ in matches:
        kept = (picks[:, 2] >= threshold) & ~matched
        x, y = picks[kept, 0], picks[kept, 1]
        near_edge = (np.minimum(x, y) < BORDER) | (np.maximum(x, y) > size - BORDER)
        count += int(near_edge.sum())
    return count


def evaluate(picks_dir, stems, threshold, data_dir=DATA_DIR):
    """All figures for the picks in `picks_dir` on micrographs `stems`."""
    result = {"micrographs": len(stems), "threshold": threshold,
              "labels": int(sum(len(read_labels(s, data_dir)) for s in stems))}
    for radius in RADII:
        matches = _match_all(picks_dir, stems, radius, data_dir)
        tp, fp, fn = _counts(matches, threshold)
        result["at_%dpx" % radius] = dict(
            figures(tp, fp, fn), average_precision=_average_precision(matches))
        if radius == RADII[0]:
            result["picks_per_micrograph"] = round((tp + fp) / len(stems), 1)
            result["false_positives_in_unlabelled_border_at_27px"] = \
                _border_false_positives(matches, threshold)
    return result


def save_result(result, path):
    """Write a row's result JSON, with the machine it ran on, and print it."""
    result["machine"] = "%s, %d CPU cores, no GPU" % (platform.processor()
                                                      or platform.machine(), os.cpu_count())
    with open(path, "w") as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--picks", required=True, help="folder of <stem>.csv with x,y,score")
    parser.add_argument("--threshold", type=float, default=None,
                        help="score threshold (default: the one maximising F1 at "
                             "27 px on the 4 training micrographs, which then need picks)")
    parser.add_argument("--data", default=DATA_DIR)
    parser.add_argument("--out", help="JSON file to write (default: print)")
    args = parser.parse_args(argv)
    train, test = split(args.data)
    threshold = args.threshold
    if threshold is None:
        threshold, _ = best_threshold(args.picks, [stem(p) for p in train], data_dir=args.data)
    result = evaluate(args.picks, [stem(p) for p in test], threshold, args.data)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
