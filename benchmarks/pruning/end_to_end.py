"""End to end: the picking benchmark's picks on the 16 test micrographs
before and after pruning, scored with benchmarks/picking/evaluate.py.

The pruner is "this method" of run.py with 200 examples per class (the
simulated base model fine-tuned on the first 4 micrographs); picks kept when
its particle probability is at least --prune-threshold.

    nice -n 10 python benchmarks/pruning/end_to_end.py \\
        --picks benchmarks/work/picking/<run>/picks --threshold 0.25
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "picking"))
import data  # noqa: E402
import evaluate  # noqa: E402
import run  # noqa: E402

from cryoprune_scipion.engine import pruning  # noqa: E402
from cryoprune_scipion.engine.io import read_micrograph, write_table  # noqa: E402
from cryoprune_scipion.engine.windows import extract_windows  # noqa: E402


def pruner():
    path = os.path.join(run.WORK, "real_200", "model.pt")
    if os.path.exists(path):
        return pruning.load(path)
    train_windows = run.cached("real_train", lambda: None)
    settings = pruning.TrainSettings(input_size=run.SIZE, few_shot=200, aux_weight=0.5,
                                     epochs=run.epochs_for(int(0.8 * 200 * 4)), batch=32)
    network, metadata = pruning.train(run.as_dataset(train_windows, data.REAL_CLASSES),
                                      settings, initial_weights=run.pretrain_base(False))
    pruning.save(network, metadata, os.path.dirname(path))
    return network, metadata


def prune_picks(picks_dir, out_dir, threshold, prune_threshold, network, metadata):
    os.makedirs(out_dir, exist_ok=True)
    _, test = evaluate.split()
    for path in test:
        stem = evaluate.stem(path)
        picks = evaluate.read_picks(picks_dir, stem)
        picks = picks[picks[:, 2] >= threshold]
        keep = np.zeros(len(picks), dtype=bool)
        if len(picks):
            windows, _ = extract_windows(read_micrograph(path), picks[:, :2], data.BOX)
            scores = pruning.predict_probabilities(
                network, data.downsample(windows, run.SIZE), metadata["input_size"])[:, 0]
            keep = scores >= prune_threshold
        write_table(os.path.join(out_dir, stem + ".csv"), ["x", "y", "score"],
                    [{"x": x, "y": y, "score": s} for x, y, s in picks[keep]])
    return [evaluate.stem(p) for p in test]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--picks", required=True, help="folder of <stem>.csv x,y,score")
    parser.add_argument("--threshold", type=float, required=True,
                        help="the picker's confidence threshold")
    parser.add_argument("--prune-threshold", type=float, default=0.5)
    parser.add_argument("--out", default=os.path.join(HERE, "results_end_to_end.json"))
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    network, metadata = pruner()
    pruned_dir = os.path.join(run.WORK, "pruned_picks")
    stems = prune_picks(args.picks, pruned_dir, args.threshold, args.prune_threshold,
                        network, metadata)
    result = {"picks": os.path.relpath(args.picks), "picker_threshold": args.threshold,
              "prune_threshold": args.prune_threshold,
              "before": evaluate.evaluate(args.picks, stems, args.threshold),
              "after": evaluate.evaluate(pruned_dir, stems, args.threshold)}
    run.save(result, args.out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
