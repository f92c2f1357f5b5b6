"""Features of the contrastive start, one factor at a time (issue 11, item 2):
epochs, working size, rotation pooling of the features and the
augmentations, each changed alone from the engine's defaults (with the
epochs of the published rows, --epochs). Every run is the whole
classification (contrastive start, k-means, refinement with the default
passes); a row holds the accuracy of the start and after refinement and the
seconds of each part.

The simulated sets of bench_simulated.py at 1,500 particles (10 views), kept
in --cache with the trained encoders: a variant that changes only the
pooling of the features (feature_rotations) encodes with the default's
encoder of its set and seed instead of training one. Rows are written to
--out as they finish; a row already there is not run again.

    nice -n 10 python benchmarks/classification/features.py \\
        --sets snr0.1 snr0.05 --variants default epochs6 rotations1 --seeds 0 \\
        --out benchmarks/classification/results/features.json
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from bench_simulated import SETS, K, contrastive_settings, run_contrastive  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# One change each from the defaults; the field names say which settings
# object holds them (ClassificationSettings, TrainingSettings, Augmentations).
# Working sizes above the simulated box (64 px) are not measured: the working
# stack is never larger than the particles' box (make_working_stack).
VARIANTS = {
    "default": {},
    "epochs6": {"epochs": 6},
    "epochs20": {"epochs": 20},
    "epochs40": {"epochs": 40},
    "working32": {"working_size": 32},
    "working48": {"working_size": 48},
    "rotations1": {"feature_rotations": 1},
    "rotations16": {"feature_rotations": 16},
    "flip": {"flip": True},
    "noise0": {"noise": 0.0},
    "noise1": {"noise": 1.0},
    "no_lowpass": {"lowpass": False},
    "shift0.1": {"shift": 0.1},
}
POOLING_ONLY = {"feature_rotations"}


def settings_of(variant, epochs, seed):
    """The classification settings of a variant: the defaults, `epochs`, and
    its one change put on the settings object that holds that field."""
    from cryoprune_scipion.engine.refine import RefinementSettings
    settings = contrastive_settings(epochs, seed, RefinementSettings().passes)
    for name, value in VARIANTS[variant].items():
        for holder in (settings, settings.training, settings.training.augmentations):
            if name in {f.name for f in dataclasses.fields(holder)}:
                setattr(holder, name, value)
                break
        else:
            raise KeyError(name)
    return settings


def particle_set(name, seed, n, cache):
    """(images, true views, defoci) of a benchmark set, simulated once."""
    path = os.path.join(cache, "%s_seed%d_n%d.npz" % (name, seed, n))
    if not os.path.exists(path):
        snr, mixture = SETS[name]
        images, labels, defoci, _ = common.simulate_set(snr, n, seed, mixture, K)
        np.savez(path + ".partial.npz", images=images, labels=labels, defoci=defoci)
        os.replace(path + ".partial.npz", path)
    stored = np.load(path)
    return stored["images"], stored["labels"], stored["defoci"]


def measure(name, variant, seed, n, epochs, cache):
    images, truth, defoci = particle_set(name, seed, n, cache)
    settings = settings_of(variant, epochs, seed)
    encoder_folder = os.path.join(cache, "encoder_%s_seed%d_n%d_e%d" % (name, seed, n, epochs))
    reuse = set(VARIANTS[variant]) <= POOLING_ONLY and variant != "default"
    if reuse:
        if not os.path.exists(encoder_folder):
            raise SystemExit("%s needs the default row of %s seed %d first (its encoder)"
                             % (variant, name, seed))
        settings.training.epochs = 0
    with tempfile.TemporaryDirectory() as folder:
        labels, _, seconds, extra = run_contrastive(
            images, common.ctf_of(defoci), folder, settings,
            initial_encoder=encoder_folder if reuse else None)
    if variant == "default":
        from cryoprune_scipion.engine import contrastive
        os.makedirs(encoder_folder, exist_ok=True)
        contrastive.save_encoder(extra["encoder"], encoder_folder, {
            "working_size": settings.working_size,
            "feature_size": settings.training.feature_size})
    refinement_seconds = extra["refinement_seconds"]
    return {"set": name, "variant": variant, "seed": seed, "n": n, "epochs": epochs,
            "change": VARIANTS[variant], "encoder": "default's, not trained" if reuse else
            "trained", "start_accuracy": common.scores(truth, extra["start_labels"])["accuracy"],
            "accuracy": common.scores(truth, labels)["accuracy"],
            "start_seconds": seconds - refinement_seconds,
            "refinement_seconds": refinement_seconds,
            "refinement_passes": len(extra["refinement"]), "final_loss": extra["final_loss"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["snr0.1", "snr0.05"], choices=list(SETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=12,
                        help="epochs of every variant but the epochs ones (the published rows)")
    parser.add_argument("--cache", default=os.path.join(HERE, "..", "work", "features"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "features.json"))
    parser.add_argument("--table", action="store_true",
                        help="instead: print the rows of --out as a Markdown table")
    args = parser.parse_args()
    if args.table:
        print(table(_read(args.out)["rows"]))
        return
    import torch
    torch.set_num_threads(1)
    os.makedirs(args.cache, exist_ok=True)
    for seed in args.seeds:
        for variant in args.variants:
            for name in args.sets:
                key = "%s/%s/seed%d" % (name, variant, seed)
                results = _read(args.out)
                if key in results["rows"]:
                    continue
                row = measure(name, variant, seed, args.n, args.epochs, args.cache)
                print(key, json.dumps(row), flush=True)
                results = _read(args.out)   # afresh: another run may have written
                results["rows"][key] = row
                results["environment"] = {"cpu_threads": 1, "note": "2 CPU cores shared with "
                                          "other jobs, no GPU; torch.set_num_threads(1)"}
                with open(args.out + ".partial", "w") as f:
                    json.dump(results, f, indent=2, sort_keys=True)
                os.replace(args.out + ".partial", args.out)


def table(rows):
    order = list(VARIANTS)
    lines = ["| set | variant | seed | start accuracy | refined accuracy | start s | "
             "refinement s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in sorted(rows.values(), key=lambda r: (r["set"], order.index(r["variant"]),
                                                    r["seed"])):
        lines.append("| %s | %s | %d | %.3f | %.3f | %.0f | %.0f |" % (
            row["set"], row["variant"], row["seed"], row["start_accuracy"], row["accuracy"],
            row["start_seconds"], row["refinement_seconds"]))
    return "\n".join(lines)


def _read(path):
    if not os.path.exists(path):
        return {"rows": {}}
    with open(path) as f:
        return json.load(f)


if __name__ == "__main__":
    main()
