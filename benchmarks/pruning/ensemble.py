"""Ensembles of pruners (issue 12): several networks trained on the same
labelled examples from different initialisations and validation splits,
their class probabilities averaged, against one network, on real
beta-galactosidase windows.

    nice -n 10 python benchmarks/pruning/ensemble.py [--shots 10 50 200]
        [--seeds 0 1 2] [--members 3] [--table]

A seed draws n examples per class from the training windows (the same
draw for every member); member m trains on them as the pruner training's
default from scratch (64 px windows and input, aux 0.5, run.py's epochs,
training seed 100 * m + seed, so its validation fifth and initialisation
differ). Every network scores the 1,600 test windows with the prune
command's default test-time copies; "1 network" is member 0, "N networks"
the mean of members 0..N-1 (paired). Writes
benchmarks/pruning/results_ensemble.json after every seed. CPU, one thread.
"""
import argparse
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import pretraining  # noqa: E402
import run  # noqa: E402

from cryoprune_scipion.engine import pruning  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_ensemble.json")
SIZE = pruning.SCRATCH_INPUT_SIZE


def label(members):
    return "1 network" if members == 1 else "%d networks" % members


def drawn(train, n, seed):
    """n windows per class, drawn by `seed`."""
    rng = np.random.default_rng(seed)
    return {c: train[c][np.sort(rng.permutation(len(train[c]))[:n])]
            for c in data.REAL_CLASSES}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--table", action="store_true",
                        help="print the Markdown table of --seeds")
    args = parser.parse_args()
    results = run.load_rows(RESULTS)
    if args.table:
        print(pretraining.table(results, args.seeds, label(1), "pruners averaged"))
        return
    threads = run.one_thread()
    train, test = run.real_windows(size=SIZE)
    x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
    results["settings"] = {"window_px": SIZE, "network_input_px": SIZE, "aux_weight": 0.5,
                           "copies": pruning.TTA, "members": args.members,
                           "test_windows": len(y_test),
                           "torch_threads": threads}
    for n in args.shots:
        for seed in args.seeds:
            rows = results["rows"].setdefault(str(n), {})
            if str(seed) in rows.get(label(args.members), {}):
                continue
            examples = drawn(train, n, seed)
            probabilities, seconds = [], 0.0
            for member in range(args.members):
                network, spent, _ = run.default_pruner(examples, n, 100 * member + seed)
                seconds += spent
                probabilities.append(run.default_probabilities(network, x_test))
                row = run.evaluate(np.mean(probabilities, axis=0), y_test, data.REAL_CLASSES,
                                   seconds)
                rows.setdefault(label(member + 1), {})[str(seed)] = row
                logging.info("n=%d seed %d %s: %s", n, seed, label(member + 1),
                             {m: row[m] for m in pretraining.METRICS + ("train_seconds",)})
            results["summary"] = pretraining.summary(results["rows"], label(1))
            run.save(results, RESULTS)


if __name__ == "__main__":
    main()
