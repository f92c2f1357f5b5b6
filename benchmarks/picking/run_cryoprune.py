"""Rows (a) and (b) of the picking benchmark: the cryoprune YOLO picker on the
beta-galactosidase micrographs, with the paper's preprocessing or without it.

Runs the `cryoprune` commands users run (`train-picker`, then `pick`) as
subprocesses on the first 4 micrographs (training) and the last 16 (test),
and scores the picks with evaluate.py. Picks are made at a low confidence
(0.01) so that average precision sees every candidate; precision, recall and
F1 are given at the default threshold (0.25), at the threshold the picker
chose at training on its validation strips (for the --tta copies), and, as
for Topaz, at the threshold that maximises F1 at 27 px on the training
micrographs (on which the picker was trained, so an optimistic choice).

CPU seconds: `pick` is timed as a whole (CPU time of the child process);
preprocessing of the test micrographs is timed apart in this process with the
engine function `pick` calls, and inference is the difference (it includes
loading Python, torch and the weights once for the 16 micrographs).

    nice -n 10 .venv/bin/python benchmarks/picking/run_cryoprune.py \\
        --preprocess paper --out benchmarks/picking/results_cryoprune_paper.json
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402
from run_topaz import run_timed  # noqa: E402

from cryoprune_scipion.engine.io import read_model_metadata  # noqa: E402
from cryoprune_scipion.engine.dihedral import TTA_COPIES  # noqa: E402
from cryoprune_scipion.engine.picking import Detection, stored_threshold  # noqa: E402
from cryoprune_scipion.engine.preprocess import (PreprocessSettings,  # noqa: E402
                                                 preprocess_micrograph_files)

CLI = [sys.executable, "-m", "cryoprune_scipion.cli"]
PICK_CONFIDENCE = 0.01
DEFAULT_THRESHOLD = 0.25


def preprocessing_cpu_seconds(model, micrographs):
    metadata = read_model_metadata(model, "picker")
    settings = PreprocessSettings.from_dict(metadata["preprocessing"])
    start = time.process_time()
    preprocess_micrograph_files(micrographs, settings, threads=1,
                                box_size=metadata["box_size"])
    return time.process_time() - start


def final_epoch(metrics_csv):
    with open(metrics_csv) as handle:
        return sum(1 for _ in handle) - 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preprocess", choices=("paper", "none"), required=True)
    parser.add_argument("--out", required=True, help="JSON result")
    parser.add_argument("--work", default="benchmarks/work/picking")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--box", type=int, default=128,
                        help="box in micrograph pixels (particle diameter 108 px)")
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--tta", type=int, default=Detection.tta, choices=TTA_COPIES,
                        help="pick's test-time augmentation copies")
    parser.add_argument("--coords", default=os.path.join(evaluate.DATA_DIR, "coordinates"),
                        help="training labels, a CSV per micrograph (x, y, diameter)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further train-picker arguments")
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "1"

    train, test = evaluate.split()
    work = os.path.join(args.work, "cryoprune_" + args.preprocess)
    model_dir = os.path.join(work, "model")
    preprocess_flags = ["--no-preprocess"] if args.preprocess == "none" else []
    train_command = CLI + [
        "train-picker", "--micrographs", *train, "--coords",
        args.coords, "--box", str(args.box),
        "--out", model_dir, "--epochs", str(args.epochs), "--patience", str(args.epochs),
        "--model", args.model, "--device", "cpu", "--threads", "1",
        *preprocess_flags, *args.extra]
    train_wall, train_cpu = run_timed(train_command)
    model = os.path.join(model_dir, "model.pt")

    picks_dir = os.path.join(work, "picks")
    timings = {}
    for part, paths in (("train", train), ("test", test)):
        timings[part] = run_timed(CLI + [
            "pick", "--model", model, "--micrographs", *paths, "--out", picks_dir,
            "--threshold", str(PICK_CONFIDENCE), "--tta", str(args.tta), "--device", "cpu",
            "--threads", "1"])
    preprocess_cpu = preprocessing_cpu_seconds(model, test)

    train_stems = [evaluate.stem(p) for p in train]
    test_stems = [evaluate.stem(p) for p in test]
    result = evaluate.evaluate(picks_dir, test_stems, DEFAULT_THRESHOLD)
    threshold, train_figures = evaluate.best_threshold(picks_dir, train_stems)
    tuned = evaluate.evaluate(picks_dir, test_stems, threshold)
    metadata = read_model_metadata(model, "picker")
    stored = stored_threshold(metadata, args.tta) if "thresholds" in metadata else None
    if stored is not None:
        at_stored = evaluate.evaluate(picks_dir, test_stems, stored)
        result["at_threshold_chosen_on_validation_strips"] = {
            "threshold": stored,
            "validation_figures": metadata["threshold_validation"][str(args.tta)],
            "at_27px": at_stored["at_27px"], "at_54px": at_stored["at_54px"]}
    n_test = len(test)
    result.update({
        "row": "cryoprune YOLO, %s preprocessing" % args.preprocess,
        "threshold_choice": "%s" % DEFAULT_THRESHOLD,
        "at_threshold_chosen_on_training_micrographs": {
            "threshold": round(threshold, 4), "train_figures_at_27px": train_figures,
            "at_27px": tuned["at_27px"], "at_54px": tuned["at_54px"]},
        "cpu_seconds_per_micrograph": {
            "preprocessing": round(preprocess_cpu / n_test, 2),
            "inference": round((timings["test"][1] - preprocess_cpu) / n_test, 2),
            "pick_command_total": round(timings["test"][1] / n_test, 2)},
        "wall_seconds_pick_16_test_micrographs": round(timings["test"][0], 1),
        "training": {"wall_seconds": round(train_wall), "cpu_seconds": round(train_cpu),
                     "epochs_run": final_epoch(os.path.join(model_dir, "metrics.csv")),
                     "micrographs": len(train),
                     "validation_metrics_of_best_epoch": metadata["final_metrics"]},
        "settings": {"model": args.model, "box": args.box, "epochs": args.epochs,
                     "tile": metadata.get("tile"),
                     "preprocessing": metadata["preprocessing"],
                     "preprocessing_choice": metadata.get("preprocessing_choice"),
                     "pick_confidence": PICK_CONFIDENCE, "tta": args.tta,
                     "extra": args.extra},
    })
    evaluate.save_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
