"""A linear probe on self-supervised features (issue 12): with few labels, a
classifier on frozen features can be steadier than fine-tuning a whole
network from scratch. The backbone of pretraining.py's self-supervised row
(SimCLR on 2,400 windows at the picker's picks, no labels, at the default
64 px input) gives each window a feature vector, averaged over its 8
quarter-turned and mirrored copies; a multinomial logistic regression
(run.fit_logistic) is fitted on the same examples per seed as the default
pruner's (`pruning._select`'s draw, its training and validation windows
both, as the probe needs no epoch chosen). A randomly initialised backbone
probed the same way is the control. Paired with recipe.py's "default" and
"20 epochs (the form's)" rows of the same seed.

    nice -n 10 .venv/bin/python benchmarks/pruning/linear_probe.py \\
        --picks benchmarks/work/picking/strips_area/cryoprune_none/picks
    .venv/bin/python benchmarks/pruning/linear_probe.py --table

Results in benchmarks/pruning/results_linear_probe.json.
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
import pretraining  # noqa: E402
import recipe  # noqa: E402
import run  # noqa: E402
from cryoprune_scipion.engine import pruning  # noqa: E402
from cryoprune_scipion.engine.dihedral import dihedral_copies, dihedral_copy  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_linear_probe.json")
SSL_EPOCHS = 8  # pretraining.py's 64 px row
NETWORKS = ("self-supervised features", "random features")


def backbone(initial):
    """The default pruner's network with `initial` weights (None: random),
    in evaluation mode."""
    settings = pruning.TrainSettings(input_size=pruning.SCRATCH_INPUT_SIZE)
    return pruning.initial_network(settings, len(data.REAL_CLASSES), initial).eval()


def features(network, windows, batch=256):
    """Pooled last feature map of each window, averaged over its 8
    dihedral copies."""
    import torch
    parts = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            x = pruning.to_network_input(windows[start:start + batch],
                                         pruning.SCRATCH_INPUT_SIZE, "cpu")
            parts.append(sum(torch.flatten(network.pool(network.features(
                dihedral_copy(x, turns, mirror))), 1)
                for turns, mirror in dihedral_copies(8)).numpy() / 8)
    return np.concatenate(parts)


def examples(train, shots, seed):
    """The windows and labels the default pruner trains and validates on."""
    dataset = run.as_dataset(train, data.REAL_CLASSES)
    settings = pruning.TrainSettings(few_shot=shots, seed=seed)
    chosen, held_out = pruning._select(dataset, settings, np.random.default_rng(seed))
    labels = np.array([label for label, _ in chosen + held_out])
    return np.stack([w for _, w in chosen + held_out]), labels


def table(rows, shots_list, seeds):
    print("| per class | classifier | F1 | accuracy | ROC AUC | F1 gain over the default "
          "pruner (same seed) | over its 20-epoch form |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shots in shots_list:
        for name in NETWORKS:
            found = [rows["%s, %d per class, seed %d" % (name, shots, s)] for s in seeds]

            def stat(column, form="%.3f ± %.3f"):
                values = np.array([row[column] for row in found])
                return form % (values.mean(), values.std(ddof=1))
            print("| %d | logistic regression on %s | %s | %s | %s | %s | %s |" % (
                shots, name, stat("f1"), stat("accuracy"), stat("roc_auc"),
                stat("f1_gain_over_default", "%+.3f ± %.3f"),
                stat("f1_gain_over_20_epochs", "%+.3f ± %.3f")))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--picks", help="folder of the picker's picks")
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        table(run.load_rows(RESULTS)["rows"], args.shots, args.seeds)
        return
    if not args.picks:
        parser.error("--picks is needed to pretrain the self-supervised backbone")
    train, x_test, y_test, results = run.default_rows(RESULTS)
    ssl = dataclasses.replace(pretraining.SELF_SUPERVISED, input_size=pruning.SCRATCH_INPUT_SIZE,
                              epochs=SSL_EPOCHS)
    path = pretraining.self_supervised_model(args.picks, ssl, pretraining.PICKS_PER_MICROGRAPH)
    import torch
    torch.manual_seed(0)  # the random backbone's weights
    networks = dict(zip(NETWORKS, [backbone(pruning.load_initial_weights(path, "resnet18")),
                                   backbone(None)]))
    baselines = run.load_rows(recipe.RESULTS)["rows"]
    for name, network in networks.items():
        test_features = features(network, x_test)
        for shots in args.shots:
            for seed in args.seeds:
                start = time.time()
                x, y = examples(train, shots, seed)
                predict = run.fit_logistic(features(network, x), y, len(data.REAL_CLASSES))
                row = run.evaluate(predict(test_features), y_test, data.REAL_CLASSES,
                                   time.time() - start)
                for column, recipe_name in (("default", "default"),
                                            ("20_epochs", "20 epochs (the form's)")):
                    other = baselines.get(recipe.key(recipe_name, shots, seed))
                    if other:
                        row["f1_gain_over_" + column] = round(row["f1"] - other["f1"], 4)
                key = "%s, %d per class, seed %d" % (name, shots, seed)
                results["rows"][key] = row
                logging.info("%s: F1 %.4f", key, row["f1"])
                run.save(results, RESULTS)


if __name__ == "__main__":
    main()
