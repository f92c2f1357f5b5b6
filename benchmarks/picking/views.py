"""View classes of the picker (issue 10, item 3) and the choice of the
confidence threshold (item 2), on simulated micrographs with a known answer.

For each SNR and number of annotated micrographs: simulate micrographs of the
barrel (top views are rings, side views two bars, the views in equal
numbers), run `cryoprune train-picker` on the annotated ones with the class
column (the views), `cryoprune pick` at a low confidence on the held-out test
micrographs, and match picks to
the true centres within the particle radius (greedy by score, each particle
at most once). Reported:

- precision, recall and F1 at the CLI's default threshold (0.25);
- the fraction of true positives whose class is the particle's view, the
  confusion of true views and predicted classes, and per view: precision
  (picks called that view that lie on a particle of that view) and recall
  (particles of that view found by a pick of that view);
- the same at 0.25 keeping one pick per particle: `pick` suppresses boxes
  per class, so a particle of uncertain view can get a box of each class;
- F1 on the test micrographs at the threshold the picker chose at training
  on its validation strips (stored in model.json; rows of pickers trained
  before the strips recorded a threshold chosen by this script on one
  held-out micrograph); and at the best threshold on the test micrographs
  (the oracle).

With `--views top side oblique` a third view, the barrel axis tilted 45
degrees, makes three classes. Training and picking run as subprocesses of the
commands users run; the training's CPU and wall seconds are logged. Results
go to results_views.json beside this script, rewritten after each row.

    cd REPO && nice -n 10 .venv/bin/python benchmarks/picking/views.py --epochs 40
    nice -n 10 .venv/bin/python benchmarks/picking/views.py --epochs 100 --snr 1 0.1 \
        --annotated 4 --views top side oblique --label _3views_100epochs
    nice -n 10 .venv/bin/python benchmarks/picking/views.py --repick \
        benchmarks/picking/results_views_seeds.json --tta 8 --out RESULTS  # same models
    python benchmarks/picking/views.py --table     # the table of BENCHMARKS.md
"""
import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from error_analysis import suppress_close  # noqa: E402
from run_topaz import run_timed  # noqa: E402

from cryoprune_scipion.engine.io import (read_coordinates, read_model_metadata,  # noqa: E402
                                         write_micrograph, write_table)
from cryoprune_scipion.engine.metrics import assign_picks  # noqa: E402
from cryoprune_scipion.engine.picking import stored_threshold  # noqa: E402
from cryoprune_scipion.engine import simulate as simulation  # noqa: E402

CLI = [sys.executable, "-m", "cryoprune_scipion.cli"]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_views.json")
SHAPE = (768, 768)
PIXEL_SIZE = 3.0               # the barrel is about 49 px across
N_PARTICLES = 40
BOX = 64
WORKING_SIZE = 512             # particles about 33 working px across
RADIUS = simulation.barrel().radius / PIXEL_SIZE   # matching radius: the particle radius
# A third view for the three-class rows, the barrel axis tilted half-way:
# rings seen obliquely, between the top and side views.
OBLIQUE = {"oblique": 45.0}
PICK_CONFIDENCE = 0.01
DEFAULT_THRESHOLD = 0.25
TRAIN_SEED, TEST_SEED = 1000, 2000


def simulate(folder, snr, count, first_seed, views):
    """`count` micrographs in folder/micrographs with their true particles in
    folder/coords/<stem>.csv (x, y, class = view); returns the paths."""
    paths = []
    for seed in range(first_seed, first_seed + count):
        stem = "mic%d" % seed
        path = os.path.join(folder, "micrographs", stem + ".mrc")
        coords = os.path.join(folder, "coords", stem + ".csv")
        if not os.path.exists(coords):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.makedirs(os.path.dirname(coords), exist_ok=True)
            simulated = simulation.simulate_micrograph(SHAPE, N_PARTICLES, PIXEL_SIZE, snr,
                                                       views=views, seed=seed)
            write_micrograph(path, simulated.image, PIXEL_SIZE)
            write_table(coords, ["x", "y", "class"],
                        [{"x": p["x"], "y": p["y"], "class": p["view"]}
                         for p in simulated.particles])
        paths.append(path)
    return paths


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def matched_picks(picks_dir, truth_dir, paths, one_per_particle=False):
    """Per micrograph: picks (score, class, true view or None when unmatched,
    whether an unmatched pick lies within the radius of a particle: a second
    box on a particle found by another pick) and the true views. With
    `one_per_particle`, picks within the particle radius of a higher-scoring
    pick of any class are dropped first (`pick` suppresses per class)."""
    result = []
    for path in paths:
        truth = read_coordinates(os.path.join(truth_dir, stem(path) + ".csv"))
        picks = read_coordinates(os.path.join(picks_dir, stem(path) + ".csv"))
        if one_per_particle and picks:
            rows = np.array([(p["x"], p["y"], float(p["score"]), i)
                             for i, p in enumerate(picks)])
            picks = [picks[int(i)] for i in sorted(suppress_close(rows, RADIUS)[:, 3])]
        scores = np.array([float(p["score"]) for p in picks])
        assigned = assign_picks([(float(p["x"]), float(p["y"])) for p in picks],
                                [(float(t["x"]), float(t["y"])) for t in truth],
                                RADIUS, scores)
        centres = np.array([(t["x"], t["y"]) for t in truth]).reshape(-1, 2)
        result.append(([(float(p["score"]), p["class"],
                         truth[k]["class"] if k >= 0 else None,
                         k < 0 and _within_radius(p, centres))
                        for p, k in zip(picks, assigned)],
                       [t["class"] for t in truth]))
    return result


def _within_radius(pick, centres):
    return bool(len(centres)) and float(
        np.hypot(*(centres - (pick["x"], pick["y"])).T).min()) < RADIUS


def detection(matches, threshold):
    tp = sum(1 for picks, _ in matches for s, _, v, _ in picks if s >= threshold and v)
    picked = sum(1 for picks, _ in matches for s, _, _, _ in picks if s >= threshold)
    n_true = sum(len(views) for _, views in matches)
    precision = tp / picked if picked else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": picked - tp, "fn": n_true - tp, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4)}


def best_thresholds(matches):
    """The range of thresholds (low, high] at which F1 is highest on these
    micrographs: from the score below the first threshold of highest F1 (the
    picking confidence when none is below) to the last. With few particles
    the range is wide, and its lowest edge is as arbitrary as its highest."""
    scores = np.unique([s for picks, _ in matches for s, _, _, _ in picks])
    if not len(scores):
        return PICK_CONFIDENCE, DEFAULT_THRESHOLD  # no picks: F1 0 at any threshold
    f1 = np.array([detection(matches, t)["f1"] for t in scores])
    best = np.flatnonzero(f1 == f1.max())
    low = scores[best[0] - 1] if best[0] else PICK_CONFIDENCE
    return float(low), float(scores[best[-1]])


def view_figures(matches, threshold, views):
    """Right-view fraction of the true positives, the confusion of true views
    (rows) and predicted classes, per-view precision and recall, and the
    mean score of the true positives by (true view, predicted class), and
    the false positives that are a second box on a found particle."""
    kept = [(s, c, v) for picks, _ in matches for s, c, v, _ in picks if s >= threshold]
    second_boxes = sum(1 for picks, _ in matches for s, _, _, near in picks
                       if s >= threshold and near)
    true_positives = [(s, c, v) for s, c, v in kept if v]
    n_true = {view: sum(truth.count(view) for _, truth in matches) for view in views}
    confusion = {v: {c: sum(1 for _, pc, pv in true_positives if (pv, pc) == (v, c))
                     for c in views} for v in views}
    mean_score = {"%s as %s" % (v, c): round(float(np.mean(
        [s for s, pc, pv in true_positives if (pv, pc) == (v, c)])), 3)
        for v in views for c in views if confusion[v][c]}
    per_view = {}
    for view in views:
        called = sum(1 for _, c, _ in kept if c == view)
        right = confusion[view][view]
        per_view[view] = {"precision": round(right / called, 4) if called else 0.0,
                          "recall": round(right / n_true[view], 4) if n_true[view] else 0.0,
                          "picks_called": called, "true": n_true[view]}
    right = sum(confusion[v][v] for v in views)
    return {"right_view_fraction_of_true_positives":
            round(right / len(true_positives), 4) if true_positives else 0.0,
            "confusion_true_view_to_class": confusion, "per_view": per_view,
            "mean_score_of_true_positives": mean_score,
            "false_positives_on_a_found_particle": second_boxes}


def train(annotated, coords, model_dir, epochs, extra):
    command = CLI + ["train-picker", "--micrographs", *annotated, "--coords", coords,
                     "--box", str(BOX), "--out", model_dir, "--epochs", str(epochs),
                     "--patience", str(epochs), "--working-size", str(WORKING_SIZE),
                     "--device", "cpu", "--threads", "1", "--overwrite", *extra]
    wall, cpu = run_timed(command)
    return {"wall_seconds": round(wall), "cpu_seconds": round(cpu)}


def pick(model, micrographs, out, tta):
    return run_timed(CLI + ["pick", "--model", model, "--micrographs", *micrographs,
                            "--out", out, "--threshold", str(PICK_CONFIDENCE),
                            "--tta", str(tta), "--device", "cpu", "--threads", "1",
                            "--overwrite"])


def configuration(work, snr, views, n_annotated, n_test, epochs, extra, name,
                  earlier=None, repick=False, tta=1):
    """Train, pick and score one row; with `earlier` (the row's results of an
    earlier run) only score the picks that run left in the work folder, or
    with `repick` pick again with its model first (the current `pick`).
    `tta` > 1: picks with test-time augmentation, in a folder of their own."""
    folder = os.path.join(work, "snr%g_%s" % (snr, "_".join(views)))
    coords = os.path.join(folder, "coords")
    annotated = simulate(folder, snr, n_annotated, TRAIN_SEED, views)
    test = simulate(folder, snr, n_test, TEST_SEED, views)
    run_dir = os.path.join(work, name)
    model_dir = os.path.join(run_dir, "model")
    model = os.path.join(model_dir, "model.pt")
    picks_dir = os.path.join(run_dir, "picks" if tta == 1 else "picks_tta%d" % tta)
    if earlier:
        training, picking = earlier["training"], earlier["pick_seconds"]
        epochs, extra = training["epochs"], earlier["settings"]["extra"]
    if not earlier:
        training = train(annotated, coords, model_dir, epochs, extra)
    if repick or not earlier:
        pick_wall, pick_cpu = pick(model, test, picks_dir, tta)
        picking = {"wall": round(pick_wall), "cpu": round(pick_cpu), "micrographs": len(test)}
    metadata = read_model_metadata(model, "picker")
    training.update(epochs=epochs, validation_fraction=metadata.get("validation_fraction"),
                    validation_metrics=metadata["final_metrics"])
    test_matches = matched_picks(picks_dir, coords, test)
    one_pick = matched_picks(picks_dir, coords, test, one_per_particle=True)
    stored = stored_threshold(metadata, tta)
    oracle = best_thresholds(test_matches)[1]
    return {
        "snr": snr, "views": list(views), "annotated_micrographs": n_annotated,
        "test_micrographs": n_test,
        "true_particles_test": sum(len(v) for _, v in test_matches),
        "at_default_threshold": {"threshold": DEFAULT_THRESHOLD,
                                 **detection(test_matches, DEFAULT_THRESHOLD),
                                 **view_figures(test_matches, DEFAULT_THRESHOLD, views)},
        "at_default_threshold_one_pick_per_particle": {
            **detection(one_pick, DEFAULT_THRESHOLD),
            **view_figures(one_pick, DEFAULT_THRESHOLD, views)},
        "at_validation_threshold": {
            "threshold": stored,
            "chosen_on": ("held-out strips, %d particles"
                          % metadata["threshold_validation"][str(tta)]["particles"]
                          if "thresholds" in metadata else "none chosen: the default"),
            **detection(test_matches, stored)},
        "at_test_best_threshold": {"threshold": round(oracle, 4),
                                   **detection(test_matches, oracle)},
        "training": training,
        "pick_seconds": picking,
        "settings": {"classes": metadata["classes"],
                     "preprocessing": metadata["preprocessing"],
                     "preprocessing_choice": metadata.get("preprocessing_choice"),
                     "tile": metadata["tile"], "box": BOX, "extra": extra},
    }


def save(results, path):
    with open(path + ".part", "w") as handle:
        handle.write(json.dumps(results, indent=2) + "\n")
    os.replace(path + ".part", path)


def markdown_table(results):
    """The table of BENCHMARKS.md: one line per row of `results`."""
    lines = ["| views | SNR | annotated | epochs | P | R | F1 at 0.25 | right view of TPs "
             "| per view P / R | F1, one pick per particle | F1 at validation threshold "
             "| F1 at test-best threshold | training CPU s |", "|" + " --- |" * 13]
    for row in results["rows"].values():
        fixed, stored = row["at_default_threshold"], row["at_validation_threshold"]
        oracle = row["at_test_best_threshold"]
        one_pick = row["at_default_threshold_one_pick_per_particle"]
        per_view = ", ".join("%s %.2f / %.2f" % (view, f["precision"], f["recall"])
                             for view, f in fixed["per_view"].items())
        lines.append("| %d | %g | %d | %d | %.3f | %.3f | %.3f | %.3f | %s | %.3f "
                     "| %.3f (%.2f%s) | %.3f (%.2f) | %d |" % (
                         len(row["views"]), row["snr"], row["annotated_micrographs"],
                         row["training"]["epochs"], fixed["precision"], fixed["recall"],
                         fixed["f1"], fixed["right_view_fraction_of_true_positives"],
                         per_view, one_pick["f1"], stored["f1"], stored["threshold"],
                         "" if "held-out" in stored["chosen_on"] else
                         ", on training" if "training" in stored["chosen_on"] else
                         ", none stored",
                         oracle["f1"], oracle["threshold"],
                         row["training"]["cpu_seconds"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snr", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--views", nargs="+", default=["top", "side"],
                        choices=sorted(simulation.VIEWS) + sorted(OBLIQUE),
                        help="view classes (half-way tilted 'oblique' for three)")
    parser.add_argument("--annotated", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--test", type=int, default=6, help="test micrographs per SNR")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--work", default="benchmarks/work/views")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--label", default="", help="suffix of the row names (a lever)")
    parser.add_argument("--table", action="store_true",
                        help="only print the Markdown table of --out")
    parser.add_argument("--rescore", action="store_true",
                        help="only score again the picks of rows already in --out")
    parser.add_argument("--repick", metavar="RESULTS",
                        help="pick again with the models of the rows of RESULTS (the "
                             "current `pick`) and score them into --out")
    parser.add_argument("--tta", type=int, default=1, choices=(1, 2, 4, 8),
                        help="pick with test-time augmentation (with --repick: the "
                             "same models)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further train-picker arguments")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.out) as handle:
            print(markdown_table(json.load(handle)))
        return
    os.environ["YOLO_OFFLINE"] = "1"
    simulation.VIEWS.update(OBLIQUE)  # simulation runs in this process only
    results = {"rows": {}}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            results = json.load(handle)
    results["machine"] = "%s, %d CPU cores, no GPU" % (
        platform.processor() or platform.machine(), os.cpu_count())
    results["simulation"] = {"shape": SHAPE, "pixel_size": PIXEL_SIZE,
                             "particles_per_micrograph": N_PARTICLES,
                             "match_radius_px": round(RADIUS, 1)}
    if args.repick:
        with open(args.repick) as handle:
            earlier = json.load(handle)["rows"]
        for name, row in earlier.items():
            results["rows"][name] = configuration(
                args.work, row["snr"], row["views"], row["annotated_micrographs"],
                row["test_micrographs"], None, None, name, row, repick=True, tta=args.tta)
            save(results, args.out)
        return
    for snr in args.snr:
        for n_annotated in args.annotated:
            name = "snr%g_annotated%d%s" % (snr, n_annotated, args.label)
            earlier = results["rows"].get(name) if args.rescore else None
            if args.rescore and not earlier:
                continue
            row = configuration(args.work, snr, args.views, n_annotated, args.test,
                                args.epochs, args.extra, name, earlier)
            results["rows"][name] = row
            save(results, args.out)
            print(json.dumps({name: row}, indent=2), flush=True)


if __name__ == "__main__":
    sys.exit(main())
