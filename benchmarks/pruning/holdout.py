"""Whether the pruner training should hold out validation windows when
examples are few (issue 12): the training keeps 20 % of each class apart
(`--val-fraction`, TrainSettings.val_fraction) to choose the epoch and to
give the threshold wizard its windows; with 50 examples per class that is
10 not learnt from. The default pruner (tta.py's network: 64 px, from
scratch, aux 0.5, 4 test-time copies) trained with 20 % held out (best
epoch kept) and with none (last epoch, the same number of epochs), seeds
0-2, on the real test windows.

    nice -n 10 .venv/bin/python benchmarks/pruning/holdout.py [--shots 10 50 200]

Results in benchmarks/pruning/results_holdout.json.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_holdout.json")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.0])
    args = parser.parse_args()
    train, x_test, y_test, results = run.default_rows(RESULTS)
    for shots in args.shots:
        for seed in args.seeds:
            for fraction in args.fractions:
                network, seconds, _ = run.default_pruner(train, shots, seed,
                                                         val_fraction=fraction)
                key = "%d per class, seed %d, held out %g" % (shots, seed, fraction)
                results["rows"][key] = run.default_row(network, seconds, x_test, y_test)
                logging.info("%s: F1 %.4f", key, results["rows"][key]["f1"])
                run.save(results, RESULTS)


if __name__ == "__main__":
    main()
