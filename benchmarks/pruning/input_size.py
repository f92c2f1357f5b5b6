"""Window and network input size (issue 12): the CPU rows' 48 px windows and
input against the paper's operating point (the full box, network input
224 px, the pruner training's default before this measurement) and sizes
between, trained from scratch on real beta-galactosidase windows, over
seeds, with the auxiliary branch on and off. It chose the automatic input
from scratch (pruning.SCRATCH_INPUT_SIZE).

    nice -n 10 python benchmarks/pruning/input_size.py [--configs 48/48 64/64 96/96 160/224]
        [--shots 10 50 200] [--seeds 0 1 2] [--aux 0.5 0] [--table]

A configuration "W/I" extracts the 160 px boxes (particle 108 px) brought to
W px (160: the full box, the pruner training's default downsampling 1) and
feeds the network at I px. Every row trains as run.py's "random init" row
(ResNet-18 from scratch, run.py's epochs, batch 32), on windows at the same
centres whatever the size (run.py's caches, one per size), so the rows of one
seed and shot count differ only in size and aux weight; the last column of
the table is the paired F1 difference from 48/48 at the same seed.

Writes benchmarks/pruning/results_input_size.json after every row, merged
under a lock with the rows that other runs of this script (on other cores)
wrote meanwhile; a rerun skips the rows already there. CPU, one thread.
"""
import argparse
import fcntl
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import pretraining  # noqa: E402
import run  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_input_size.json")
BASELINE = "48/48, aux 0.5"


def label(config, aux):
    return "%s, aux %g" % (config, aux)


def in_size_order(results):
    """The rows of each shot count by network input, then with the branch first."""
    def key(name):
        config, aux = name.split(", aux ")
        return int(config.split("/")[1]), -float(aux)
    return {"rows": {n: {name: by_init[name] for name in sorted(by_init, key=key)}
                     for n, by_init in results["rows"].items()}}


def load():
    if not os.path.exists(RESULTS):
        return {"rows": {}}
    with open(RESULTS) as f:
        return json.load(f)


def add_row(n, name, seed, row):
    """Merge one row into the results file (under a lock: parallel runs)."""
    os.makedirs(run.WORK, exist_ok=True)
    with open(os.path.join(run.WORK, "input_size.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load()
        results["rows"].setdefault(str(n), {}).setdefault(name, {})[str(seed)] = row
        results["summary"] = pretraining.summary(results["rows"], BASELINE)
        run.save(results, RESULTS)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=["48/48", "64/64", "96/96", "160/224"],
                        help="window px / network input px")
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--aux", type=float, nargs="+", default=[0.5],
                        help="auxiliary loss weights (0: without the branch)")
    parser.add_argument("--table", action="store_true",
                        help="print the Markdown table of --seeds")
    args = parser.parse_args()
    if args.table:
        print(pretraining.table(in_size_order(load()), args.seeds, BASELINE,
                                "windows / input, aux"))
        return
    threads = run.one_thread()
    settings = {"backbone": "resnet18", "initial_weights": "random",
                "window_box_px": data.BOX, "torch_threads": threads}
    for config in args.configs:
        window, network_input = (int(v) for v in config.split("/"))
        train, test = run.real_windows(size=window)
        x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
        for n in args.shots:
            for seed in args.seeds:
                for aux in args.aux:
                    if str(seed) in load()["rows"].get(str(n), {}).get(label(config, aux), {}):
                        continue
                    row = run.cnn_row(train, data.REAL_CLASSES, n, x_test, y_test, None, aux,
                                      seed=seed, input_size=network_input)
                    row.update(settings)
                    add_row(n, label(config, aux), seed, row)
                    logging.info("n=%d seed %d %s: %s", n, seed, label(config, aux),
                                 {m: row[m] for m in pretraining.METRICS + ("train_seconds",)})


if __name__ == "__main__":
    main()
