"""Self-training with pseudo-labels (issue 12): whether the pruner gains
from the unlabelled windows of the same micrographs. Per seed, n examples
per class are drawn from the 4 training micrographs' windows and the
default pruner (64 px, from scratch, aux 0.5, run.py's epochs) is trained
on them; it then scores the other windows of those micrographs with 4
test-time copies, labels hidden, and the windows it is sure of are added
with the class it gives them (`pseudo_labelled`'s rules); a second pruner
is trained from scratch on both. Both are scored on the real test windows
(paired), with the pseudo-labels' count and accuracy against the hidden
labels.

The unlabelled pool holds the training windows not drawn (190 per class at
50), as many of each class: real picks to prune hold mostly particles and
background, so this pool is if anything kind to the method.

    nice -n 10 .venv/bin/python benchmarks/pruning/pseudo_labels.py [--shots 50]
        [--seeds 0 1 2] [--confidence 0.9] [--rule particle|likeliest]

Results in benchmarks/pruning/results_pseudo_labels.json.
"""
import argparse
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import run  # noqa: E402
from cryoprune_scipion.engine import pruning  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_pseudo_labels.json")


def split(windows, n, seed):
    """(labelled, unlabelled) dicts of class -> windows: n drawn per class."""
    rng = np.random.default_rng(1000 + seed)
    labelled, unlabelled = {}, {}
    for name in data.REAL_CLASSES:
        order = rng.permutation(len(windows[name]))
        labelled[name] = windows[name][order[:n]]
        unlabelled[name] = windows[name][order[n:]]
    return labelled, unlabelled


def train(windows, seed):
    """The default pruner on all of `windows` (class -> windows)."""
    n_train = int(0.8 * sum(len(w) for w in windows.values()))
    return run.train_cnn(windows, data.REAL_CLASSES, 0, None, 0.5, seed,
                         epochs=run.epochs_for(n_train),
                         input_size=pruning.SCRATCH_INPUT_SIZE)


def pseudo_labelled(network, unlabelled, confidence, rule):
    """class -> the pool windows given that class, and the share of them
    whose hidden label agrees. Rule "likeliest": the likeliest class when
    its probability reaches `confidence`; rule "particle": particle when the
    particle probability reaches `confidence`, the likeliest junk class when
    it is at most 1 - `confidence` (the junk classes share the rest, so few
    junk windows pass the first rule)."""
    x, y = run.test_arrays(unlabelled, data.REAL_CLASSES)
    probabilities = run.default_probabilities(network, x)
    called = probabilities.argmax(axis=1)
    if rule == "likeliest":
        sure = probabilities.max(axis=1) >= confidence
    else:
        particle = probabilities[:, 0]
        called = np.where(particle >= confidence, 0, 1 + probabilities[:, 1:].argmax(axis=1))
        sure = (particle >= confidence) | (particle <= 1 - confidence)
    added = {name: x[sure & (called == k)] for k, name in enumerate(data.REAL_CLASSES)}
    agree = float((called[sure] == y[sure]).mean()) if sure.any() else float("nan")
    return added, agree


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--rule", choices=["likeliest", "particle"], default="particle")
    args = parser.parse_args()
    windows, x_test, y_test, results = run.default_rows(RESULTS)
    for shots in args.shots:
        for seed in args.seeds:
            labelled, unlabelled = split(windows, shots, seed)
            network, seconds, _ = train(labelled, seed)
            key = "%d per class, seed %d" % (shots, seed)
            suffix = ", with pseudo-labels (%s %g)" % (args.rule, args.confidence)
            results["rows"][key + ", labelled only"] = run.default_row(network, seconds,
                                                                       x_test, y_test)
            added, agree = pseudo_labelled(network, unlabelled, args.confidence, args.rule)
            both = {name: np.concatenate([labelled[name], added[name]])
                    for name in data.REAL_CLASSES}
            network, seconds, _ = train(both, seed)
            row = run.default_row(network, seconds, x_test, y_test)
            row.update(pseudo_labels={name: len(w) for name, w in added.items()},
                       pseudo_label_accuracy=round(agree, 4))
            results["rows"][key + suffix] = row
            logging.info("%s%s: F1 %.4f -> %.4f (%d pseudo-labels, %.3f right)", key, suffix,
                         results["rows"][key + ", labelled only"]["f1"], row["f1"],
                         sum(row["pseudo_labels"].values()), agree)
            run.save(results, RESULTS)


if __name__ == "__main__":
    main()
