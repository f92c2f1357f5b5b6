"""Training-recipe levers of the default pruner (issue 12): the number of
epochs (run.py's rule, about 1,200 window presentations, against the
form's 20), the learning rate, label smoothing, the augmentations'
noise and shifts, and a smaller backbone. Each recipe changes one thing of
the default pruner (tta.py's network: 64 px, from scratch, aux 0.5, 4
test-time copies) and is trained on the same examples per seed, so the
differences from "default" are paired; real test windows.

    nice -n 10 .venv/bin/python benchmarks/pruning/recipe.py [--recipes NAME ...]
        [--shots 50] [--seeds 0 1 2]
    .venv/bin/python benchmarks/pruning/recipe.py --table

Results in benchmarks/pruning/results_recipe.json.
"""
import argparse
import contextlib
import functools
import logging
import os
import sys
from unittest import mock

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
from cryoprune_scipion.engine import pruning  # noqa: E402

RESULTS = os.path.join(run.HERE, "results_recipe.json")

# name: (TrainSettings fields, augment() keywords, label smoothing)
RECIPES = {
    "default": ({}, {}, 0.0),
    "20 epochs (the form's)": ({"epochs": 20}, {}, 0.0),
    "40 epochs": ({"epochs": 40}, {}, 0.0),
    "learning rate 3e-3": ({"learning_rate": 3e-3}, {}, 0.0),
    "learning rate 3e-4": ({"learning_rate": 3e-4}, {}, 0.0),
    "label smoothing 0.1": ({}, {}, 0.1),
    "noise up to 0.6": ({}, {"noise": 0.6}, 0.0),
    "noise up to 1.0": ({}, {"noise": 1.0}, 0.0),
    "40 epochs, noise up to 0.6": ({"epochs": 40}, {"noise": 0.6}, 0.0),
    "shifts up to 15 %": ({}, {"max_shift": 0.15}, 0.0),
    "mobilenet_v3_small": ({"backbone": "mobilenet_v3_small"}, {}, 0.0),
}


@contextlib.contextmanager
def patched(augment_options, smoothing):
    """The training's augmentation and loss with other keywords."""
    import torch.nn.functional as F
    with contextlib.ExitStack() as stack:
        if augment_options:
            stack.enter_context(mock.patch.object(
                pruning, "augment", functools.partial(pruning.augment, **augment_options)))
        if smoothing:
            stack.enter_context(mock.patch.object(
                F, "cross_entropy", functools.partial(F.cross_entropy,
                                                      label_smoothing=smoothing)))
        yield


def key(recipe, shots, seed):
    return "%s, %d per class, seed %d" % (recipe, shots, seed)


def table(results, shots_list, seeds):
    print("| per class | recipe | seeds | F1 | accuracy | ROC AUC | F1 gain over default "
          "(same seed) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = results["rows"]
    for shots in shots_list:
        for recipe in RECIPES:
            found = [s for s in seeds if key(recipe, shots, s) in rows]
            if not found:
                continue

            def stat(name, pick=found):
                values = np.array([rows[key(recipe, shots, s)][name] for s in pick])
                return "%.3f ± %.3f" % (values.mean(), values.std(ddof=1) if len(values) > 1
                                        else 0.0)
            paired = [s for s in found if key("default", shots, s) in rows]
            gain = np.array([rows[key(recipe, shots, s)]["f1"]
                             - rows[key("default", shots, s)]["f1"] for s in paired])
            gain_text = ("-" if recipe == "default" or not len(gain) else
                         "%+.3f ± %.3f (%s)" % (gain.mean(), gain.std(ddof=1) if len(gain) > 1
                                                else 0.0,
                                                ", ".join("%+.3f" % g for g in gain)))
            print("| %d | %s | %d | %s | %s | %s | %s |" % (
                shots, recipe, len(found), stat("f1"), stat("accuracy"), stat("roc_auc"),
                gain_text))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--shots", type=int, nargs="+", default=[50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        table(run.load_rows(RESULTS), args.shots, args.seeds)
        return
    train, x_test, y_test, results = run.default_rows(RESULTS)
    settings_of_rows = {k: v for k, v in results.items() if k != "rows"}
    for shots in args.shots:
        for seed in args.seeds:
            for recipe in args.recipes:
                settings, augment_options, smoothing = RECIPES[recipe]
                with patched(augment_options, smoothing):
                    network, seconds, _ = run.default_pruner(train, shots, seed, **settings)
                name = key(recipe, shots, seed)
                row = run.default_row(network, seconds, x_test, y_test)
                logging.info("%s: F1 %.4f", name, row["f1"])
                # read again: another process may run other recipes on the same file
                results = dict(run.load_rows(RESULTS), **settings_of_rows)
                results["rows"][name] = row
                run.save(results, RESULTS)


if __name__ == "__main__":
    main()
