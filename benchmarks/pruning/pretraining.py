"""Pretraining benchmark (issue 12): which starting point helps the pruner on
real beta-galactosidase windows, over seeds.

    nice -n 10 python benchmarks/pruning/pretraining.py \\
        --picks benchmarks/work/picking/cryoprune_none/picks [--seeds 0 1 2]
        [--shots 10 50 200] [--inits ...] [--size 48] [--ssl-epochs 3]
        [--per-micrograph 120] [--out JSON] [--table]

Initialisations, each trained as run.py's "this method" row (aux branch
0.5, 48 px windows and network input or --size, run.py's epochs) on 10, 50
and 200 examples per class of the 4 training micrographs, tested on the 1,600
windows of the 16 test micrographs (run.py's caches):
  random init      from scratch;
  simulated base   run.py's base model (`engine.base_pruner` on simulated
                   micrographs);
  self-supervised  self_supervised.py (SimCLR) on the user's unlabelled
                   picks: windows at the picker's picks (confidence >= 0.01,
                   `benchmarks/picking/run_cryoprune.py`) on all 20
                   micrographs, PICKS_PER_MICROGRAPH drawn at random per
                   micrograph, without labels. They include the test
                   micrographs, as a user's own picks do: the windows a user
                   prunes are the ones available before labelling.
ImageNet weights are not available offline here, so they have no row.
The self-supervised model is pretrained once (seed 0) and shared by the
classifier seeds; the seeds change the examples drawn, the classifier's
initial head and the augmentations.

Writes benchmarks/pruning/results_pretraining.json (or --out) after every
row; a rerun skips the rows already there. CPU, one thread.
"""
import argparse
import dataclasses
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import run  # noqa: E402
import self_supervised  # noqa: E402

from cryoprune_scipion.engine.io import read_coordinates, read_micrograph  # noqa: E402
from cryoprune_scipion.engine.windows import extract_windows  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_pretraining.json")
PICKS_PER_MICROGRAPH = 120
SELF_SUPERVISED = self_supervised.PretrainSettings(input_size=run.SIZE, epochs=3, batch=64,
                                               seed=0)
INITIALISATIONS = ("random init", "simulated base", "self-supervised")
METRICS = ("accuracy", "f1", "roc_auc")


def unlabelled_windows(picks_folder, size, per_micrograph, seed=0):
    """Windows at picks drawn at random on every micrograph, no labels."""
    rng = np.random.default_rng(seed)
    out = []
    for name in data.micrograph_names():
        picks = read_coordinates(os.path.join(picks_folder, name + ".csv"))
        centres = np.array([[p["x"], p["y"]] for p in picks])
        centres = centres[rng.permutation(len(centres))[:per_micrograph]]
        micrograph = read_micrograph(os.path.join(data.DATA, "micrographs", name + ".jpg"))
        windows, _ = extract_windows(micrograph, centres, data.BOX)
        out.append(data.downsample(windows, size))
    return {"windows": np.concatenate(out)}


def self_supervised_model(picks_folder, settings, per_micrograph):
    """The SimCLR backbone, cached under a name that tells its recipe (the
    first recipe, this script's defaults, kept its unsuffixed names)."""
    first = (settings.input_size, settings.epochs, per_micrograph) == (
        run.SIZE, SELF_SUPERVISED.epochs, PICKS_PER_MICROGRAPH)
    suffix = "" if first else "_%dpx_%de_%dpm" % (settings.input_size, settings.epochs,
                                                  per_micrograph)
    path = os.path.join(run.WORK, "self_supervised" + suffix, "model.pt")
    if os.path.exists(path):
        return path
    windows_suffix = "" if first else "_%dpx_%dpm" % (settings.input_size, per_micrograph)
    windows = run.cached("unlabelled_picks" + windows_suffix, lambda: unlabelled_windows(
        picks_folder, settings.input_size, per_micrograph))
    start = time.time()
    network, metadata = self_supervised.pretrain(windows["windows"], settings,
                                                 log=logging.info)
    metadata["pretraining"]["seconds"] = round(time.time() - start, 1)
    return self_supervised.save(network, metadata, os.path.dirname(path))


def mean_sd(values):
    return [round(float(np.mean(values)), 4),
            round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None]


def summary(rows, baseline="random init"):
    """Mean and standard deviation over seeds of each metric, and of its
    difference from the `baseline` row at the same seed (the same examples
    drawn): "f1_gain" etc."""
    out = {}
    for n, by_init in rows.items():
        for init, by_seed in by_init.items():
            row = {"seeds": len(by_seed)}
            for m in METRICS:
                row[m] = mean_sd([r[m] for r in by_seed.values()])
                if init != baseline:
                    reference = by_init.get(baseline, {})
                    gains = [r[m] - reference[s][m] for s, r in by_seed.items()
                             if s in reference]
                    row[m + "_gain"] = mean_sd(gains) if gains else None
            out.setdefault(n, {})[init] = row
    return out


def cell(value):
    return "%.3f" % value[0] if value[1] is None else "%.3f ± %.3f" % tuple(value)


def table(results, seeds, baseline="random init", column="initialisation"):
    """The summary of the given seeds (those run of them)."""
    rows = {n: {init: {s: r for s, r in by_seed.items() if int(s) in seeds}
                for init, by_seed in by_init.items()}
            for n, by_init in results["rows"].items()}
    lines = ["| examples per class | %s | seeds | accuracy | F1 | ROC AUC | "
             "F1 gain over %s (same seed) |" % (column, baseline),
             "|---|---|---|---|---|---|---|"]
    for n, by_init in summary(rows, baseline).items():
        for init, row in by_init.items():
            gain = row.get("f1_gain")
            lines.append("| %s | %s | %d | %s | %s |" % (
                n, init, row["seeds"], " | ".join(cell(row[m]) for m in METRICS),
                "%+.3f ± %.3f" % tuple(gain) if gain and gain[1] is not None else "-"))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--picks", default=os.path.join(run.HERE, "..", "work", "picking",
                                                        "cryoprune_none", "picks"),
                        help="folder of the picker's picks (CSV per micrograph)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--inits", nargs="+", default=list(INITIALISATIONS),
                        choices=INITIALISATIONS)
    parser.add_argument("--size", type=int, default=run.SIZE,
                        help="window and network input px")
    parser.add_argument("--ssl-epochs", type=int, default=SELF_SUPERVISED.epochs)
    parser.add_argument("--per-micrograph", type=int, default=PICKS_PER_MICROGRAPH,
                        help="unlabelled picks drawn per micrograph")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--table", action="store_true",
                        help="print the Markdown table of --seeds")
    args = parser.parse_args()
    if args.table:
        print(table(run.load_rows(args.out), args.seeds))
        return
    threads = run.one_thread()
    train, test = run.real_windows(size=args.size)
    x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
    ssl = dataclasses.replace(SELF_SUPERVISED, input_size=args.size, epochs=args.ssl_epochs)
    make = {"random init": lambda: None, "simulated base": lambda: run.pretrain_base(False),
            "self-supervised": lambda: self_supervised_model(args.picks, ssl,
                                                             args.per_micrograph)}
    initial = {init: make[init]() for init in args.inits}
    results = run.load_rows(args.out)
    results["settings"] = {
        "network_input_px": args.size, "backbone": "resnet18", "aux_weight": 0.5,
        "test_windows": len(y_test), "unlabelled_windows": 20 * args.per_micrograph,
        "self_supervised": vars(ssl), "torch_threads": threads}
    # Seeds inside shots: a partial run has every initialisation at the
    # smallest shot count first.
    for n in args.shots:
        for seed in args.seeds:
            for init in args.inits:
                by_seed = results["rows"].setdefault(str(n), {}).setdefault(init, {})
                if str(seed) in by_seed:
                    continue
                by_seed[str(seed)] = run.cnn_row(train, data.REAL_CLASSES, n, x_test, y_test,
                                                 initial[init], 0.5, seed=seed,
                                                 input_size=args.size)
                logging.info("n=%d seed %d %s: %s", n, seed, init,
                             {m: by_seed[str(seed)][m] for m in METRICS + ("train_seconds",)})
                results["summary"] = summary(results["rows"])
                run.save(results, args.out)


if __name__ == "__main__":
    main()
