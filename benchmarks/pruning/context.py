"""How much of the micrograph around a pick the pruner should see (issue 12):
windows of 128, 160 (the other rows' box, 1.5 particle diameters) and 224
micrograph pixels around the same centres, all brought to the 64 px input of
the default pruner (tta.py's network, from scratch, aux 0.5, 4 test-time
copies), at 50 examples per class, seeds 0-2, on the real test windows.

    nice -n 10 .venv/bin/python benchmarks/pruning/context.py [--boxes 128 160 224]

Results in benchmarks/pruning/results_context.json.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import run  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_context.json")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--boxes", type=int, nargs="+", default=[128, 160, 224])
    parser.add_argument("--shots", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for box in args.boxes:
        train, x_test, y_test, results = run.default_rows(RESULTS, box)
        results["diameter"] = data.DIAMETER
        for seed in args.seeds:
            network, seconds, _ = run.default_pruner(train, args.shots, seed)
            key = "box %d, %d per class, seed %d" % (box, args.shots, seed)
            results["rows"][key] = run.default_row(network, seconds, x_test, y_test)
            logging.info("%s: F1 %.4f", key, results["rows"][key]["f1"])
            run.save(results, RESULTS)


if __name__ == "__main__":
    main()
