"""What the pruner's errors on the real test windows are (issue 12): are
the background and off-centre windows it calls particles unlabelled
particles?

    nice -n 10 python benchmarks/pruning/errors.py [--shots 50] [--seeds 0 1 2]
        [--png docs/pruning_errors.png]

For each seed, the pruner training's default from scratch (tta.py's network:
64 px windows and input, aux 0.5) scores the 1,600 test windows with the
prune command's default test-time copies. The test windows' centres are
drawn again as data.real_windows drew them (same seed, same order). Each
window gets the best score of the picker's picks within 27 px of its centre
(the current default picker, row (b8) of the picking benchmark, which never
saw the test micrographs' labels): a second, independent opinion of whether
a particle is centred there. Reports, per true class, how many windows the
pruner called particles and the share of them, and of the others, that the
picker also picks at its threshold 0.25; writes a PNG of seed 0's windows
called wrongly (rows: background and off-centre windows called particles,
particles called junk; then right ones for comparison; each window with the
picker's score). Results in
benchmarks/pruning/results_errors.json.
"""
import argparse
import logging
import os
import sys

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import run  # noqa: E402

from cryoprune_scipion.engine import pruning  # noqa: E402
from cryoprune_scipion.engine.io import read_coordinates, read_micrograph  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_errors.json")
PICKS = os.path.join(run.HERE, "..", "work", "picking", "strips_area", "cryoprune_none",
                     "picks")
SIZE = pruning.SCRATCH_INPUT_SIZE
MATCH, PICKER_THRESHOLD = 27, 0.25


def test_centres():
    """{class: (n, 2)} centres of run.real_windows' test windows, in the
    same order as its windows, and the micrograph of each."""
    rng = np.random.default_rng(1)
    centres = {c: [] for c in data.REAL_CLASSES}
    names = {c: [] for c in data.REAL_CLASSES}
    for name in data.micrograph_names()[4:]:
        shape = read_micrograph(os.path.join(data.DATA, "micrographs", name + ".jpg")).shape
        rows = read_coordinates(os.path.join(data.DATA, "coordinates", name + ".csv"))
        labels = np.array([[r["x"], r["y"]] for r in rows])
        for cls, xy in data.real_centres(labels, shape, 25, rng).items():
            centres[cls].append(xy)
            names[cls] += [name] * len(xy)
    return {c: np.concatenate(v) for c, v in centres.items()}, names


def picker_scores(centres, names):
    """The best picker score within MATCH px of each centre (0 if none)."""
    trees = {}
    out = np.zeros(len(centres))
    for i, (xy, name) in enumerate(zip(centres, names)):
        if name not in trees:
            picks = read_coordinates(os.path.join(PICKS, name + ".csv"))
            trees[name] = (cKDTree([[p["x"], p["y"]] for p in picks]),
                           np.array([float(p["score"]) for p in picks]))
        tree, scores = trees[name]
        near = tree.query_ball_point(xy, MATCH)
        out[i] = scores[near].max() if near else 0.0
    return out


def draw(path, windows, scores, rows):
    """One row of windows per (title, indices), at most 16 each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = 16
    figure, axes = plt.subplots(len(rows), columns,
                                figsize=(1.6 * columns, 1.9 * len(rows)))
    for r, (title, chosen) in enumerate(rows):
        for c in range(columns):
            axis = axes[r, c]
            axis.axis("off")
            if c < len(chosen):
                axis.imshow(windows[chosen[c]], cmap="gray")
                axis.set_title("%.2f" % scores[chosen[c]], fontsize=7)
        axes[r, 0].text(-0.1, 0.5, title, transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=8)
    figure.suptitle("Pruner errors on real test windows (number: picker score at the centre)",
                    fontsize=9)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)


def called_particle(train, x_test, shots, seed):
    """Whether the default pruner, trained from scratch on `shots` windows
    per class with this seed, calls each test window a particle."""
    network, _, _ = run.default_pruner(train, shots, seed)
    return run.default_probabilities(network, x_test).argmax(1) == 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--png")
    args = parser.parse_args()
    run.one_thread()
    train, test = run.real_windows(size=SIZE)
    x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
    centres, names = test_centres()
    picker = picker_scores(np.concatenate([centres[c] for c in data.REAL_CLASSES]),
                           sum((names[c] for c in data.REAL_CLASSES), []))
    picked = picker >= PICKER_THRESHOLD
    results = {"picker": PICKS, "picker_threshold": PICKER_THRESHOLD, "match_px": MATCH,
               "copies": pruning.TTA, "shots": args.shots, "seeds": {}}
    for seed in args.seeds:
        called = called_particle(train, x_test, args.shots, seed)
        by_class = {}
        for k, cls in enumerate(data.REAL_CLASSES):
            mine = y_test == k
            by_class[cls] = {
                "windows": int(mine.sum()), "called_particle": int((mine & called).sum()),
                "picker_picks_called_particle": int((mine & called & picked).sum()),
                "picker_picks_called_junk": int((mine & ~called & picked).sum())}
        results["seeds"][str(seed)] = by_class
        logging.info("seed %d: %s", seed, by_class)
        if args.png and seed == args.seeds[0]:
            rows = [("background\ncalled particle", np.flatnonzero((y_test == 1) & called)),
                    ("off-centre\ncalled particle", np.flatnonzero((y_test == 3) & called)),
                    ("particle\ncalled junk", np.flatnonzero((y_test == 0) & ~called)),
                    ("for comparison:\nparticle, right", np.flatnonzero((y_test == 0) & called)),
                    ("background, right", np.flatnonzero((y_test == 1) & ~called))]
            draw(args.png, x_test, picker, rows)
    run.save(results, RESULTS)


if __name__ == "__main__":
    main()
