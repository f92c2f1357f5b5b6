"""The stored picking threshold chosen again by the current rule, on trained
beta-galactosidase pickers (issue 10): no training, no picking.

For each benchmark run given (its results JSON, and its work folder holding
the model and the picks made at a low confidence on the 16 test micrographs),
the training dataset's validation strips are written again with the run's
settings and seed (the same strips the training scored), the threshold is
chosen on them with `choose_thresholds` (the rule of the installed engine),
and the test picks are scored at the threshold the run stored and at the one
chosen now. The strips' F1 at each candidate threshold is kept too.

    nice -n 10 .venv/bin/python benchmarks/picking/threshold_rule.py \\
        --run benchmarks/picking/results_cryoprune_strips_area.json \\
              benchmarks/work/picking/strips_area/cryoprune_none ... \\
        --out benchmarks/picking/results_threshold_rule.json
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

from cryoprune_scipion.engine import dihedral, picking  # noqa: E402
from cryoprune_scipion.engine.io import read_model_metadata  # noqa: E402
from cryoprune_scipion.engine.metrics import PickingScore  # noqa: E402
from cryoprune_scipion.engine.preprocess import PreprocessSettings  # noqa: E402


def strip_curve_recorder():
    """Wrap picking.best_threshold so that each call's F1 per candidate
    threshold is kept (one call per number of test-time copies)."""
    curves = []
    choose = picking.best_threshold

    def recording(matched, scores, particles):
        curves.append({str(t): round(PickingScore.from_matches(matched[scores >= t],
                                                               particles).f1, 4)
                       for t in picking.THRESHOLD_CHOICES})
        return choose(matched, scores, particles)
    picking.best_threshold = recording
    return curves


def rechoose(result_json, run_work, curves, work):
    with open(result_json) as f:
        run = json.load(f)
    settings = run["settings"]
    extra = settings.get("extra", [])
    seed = int(extra[extra.index("--seed") + 1]) if "--seed" in extra else 0
    model_dir = os.path.join(run_work, "model")
    metadata = read_model_metadata(os.path.join(model_dir, "model.pt"), "picker")
    preprocessing = PreprocessSettings.from_dict(metadata["preprocessing"])
    train, test = evaluate.split()
    labelled, _, classes = picking.read_training_coordinates(
        train, os.path.join(evaluate.DATA_DIR, "coordinates"), metadata["classes"])
    dataset = os.path.join(work, os.path.basename(result_json)[:-5])
    picking.write_yolo_dataset(labelled, classes, metadata["box_size"], preprocessing,
                               dataset, metadata["validation_fraction"], metadata["tile"],
                               1, seed)
    grid = preprocessing.grid(picking.read_micrograph(min(labelled)).shape,
                              metadata["box_size"])
    curves.clear()
    chosen = picking.choose_thresholds(os.path.join(model_dir, "model.pt"), dataset,
                                       picking.box_in_working(metadata["box_size"], grid))
    copies = str(settings["tta"])
    stems = [evaluate.stem(p) for p in test]
    picks = os.path.join(run_work, "picks")
    stored, now = metadata["thresholds"][copies], chosen["thresholds"][copies]
    return {"run": os.path.basename(result_json), "copies": int(copies),
            "strip_f1_by_threshold": curves[dihedral.TTA_COPIES.index(int(copies))],
            "stored": {"threshold": stored,
                       "test_at_27px": evaluate.evaluate(picks, stems, stored)["at_27px"]},
            "chosen_now": {"threshold": now, "strip_figures": chosen["threshold_validation"][copies],
                           "test_at_27px": evaluate.evaluate(picks, stems, now)["at_27px"]}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=2, action="append", required=True,
                        metavar=("RESULTS", "WORK"),
                        help="run_cryoprune.py's results JSON and its work folder "
                             "(--work/cryoprune_<preprocess>)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "1"
    curves = strip_curve_recorder()
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for result_json, run_work in args.run:
            rows.append(rechoose(result_json, run_work, curves, work))
            row = rows[-1]
            print("%s: stored %.2f F1 %.4f, now %.2f F1 %.4f" % (
                row["run"], row["stored"]["threshold"], row["stored"]["test_at_27px"]["f1"],
                row["chosen_now"]["threshold"], row["chosen_now"]["test_at_27px"]["f1"]),
                flush=True)
    evaluate.save_result({"rows": rows}, args.out)


if __name__ == "__main__":
    sys.exit(main())
