"""Test-time augmentation of the pruner (issue 12): the class probabilities
of each window averaged over 1, 2, 4 and 8 turned and mirrored copies
(`pruning.predict_probabilities(copies=...)`, `prune --tta`), on real
beta-galactosidase windows.

    nice -n 10 python benchmarks/pruning/tta.py [--shots 10 50 200] [--seeds 0 1 2]
        [--table]

Each (shot count, seed) trains one network as input_size.py's "64/64, aux
0.5" row (the pruner training's default from scratch: ResNet-18, 64 px
windows and input, aux weight 0.5, run.py's epochs) and scores the 1,600
test windows of the 16 test micrographs with every number of copies, so the
rows of one seed differ only in the copies; the last column of the table is
the paired F1 difference from one copy. Writes
benchmarks/pruning/results_tta.json after every network; a rerun skips the
networks already there. CPU, one thread.
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import pretraining  # noqa: E402
import run  # noqa: E402

from cryoprune_scipion.engine import pruning  # noqa: E402
from cryoprune_scipion.engine.dihedral import TTA_COPIES  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_tta.json")
SIZE = pruning.SCRATCH_INPUT_SIZE


def label(copies):
    return "1 copy" if copies == 1 else "%d copies" % copies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true",
                        help="print the Markdown table of --seeds")
    args = parser.parse_args()
    results = run.load_rows(RESULTS)
    if args.table:
        print(pretraining.table(results, args.seeds, label(1), "test-time copies"))
        return
    threads = run.one_thread()
    train, test = run.real_windows(size=SIZE)
    x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
    results["settings"] = {"window_px": SIZE, "network_input_px": SIZE, "aux_weight": 0.5,
                           "backbone": "resnet18", "initial_weights": "random",
                           "test_windows": len(y_test),
                           "torch_threads": threads}
    for n in args.shots:
        for seed in args.seeds:
            rows = results["rows"].setdefault(str(n), {})
            if str(seed) in rows.get(label(1), {}):
                continue
            network, seconds, _ = run.default_pruner(train, n, seed)
            for copies in TTA_COPIES:
                start = time.time()
                probabilities = pruning.predict_probabilities(network, x_test, SIZE,
                                                              copies=copies)
                row = run.evaluate(probabilities, y_test, data.REAL_CLASSES, seconds)
                row["predict_seconds"] = round(time.time() - start, 1)
                rows.setdefault(label(copies), {})[str(seed)] = row
                logging.info("n=%d seed %d %s: %s", n, seed, label(copies),
                             {m: row[m] for m in pretraining.METRICS + ("predict_seconds",)})
            results["summary"] = pretraining.summary(results["rows"], label(1))
            run.save(results, RESULTS)


if __name__ == "__main__":
    main()
