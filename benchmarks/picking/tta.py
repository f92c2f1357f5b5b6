"""Test-time augmentation lever of the picking benchmark (issue 10, item 2):
one trained picker, its picks on the beta-galactosidase test micrographs
with `cryoprune pick --tta N` for N = 1 (off), 2 (mirror), 4 (and half
turns), 8 (and quarter turns), scored like the other rows.

Each N picks the 16 test micrographs at a low confidence (0.01, for average
precision and F1 at 0.25) and again at the CLI's default threshold (0.25),
because a copy is searched down to threshold / N: the picks a user gets at
0.25 are those of the second run. The 4 training micrographs are picked at
0.01 for the threshold chosen on them. Results are written after each N.

    nice -n 10 .venv/bin/python benchmarks/picking/tta.py \\
        --model benchmarks/work/picking/flatten/cryoprune_none/model/model.pt \\
        --out benchmarks/picking/results_tta.json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402
from run_cryoprune import CLI, DEFAULT_THRESHOLD, PICK_CONFIDENCE  # noqa: E402
from run_topaz import run_timed  # noqa: E402

COPIES = (1, 2, 4, 8)


def pick(model, micrographs, out, threshold, copies):
    wall, cpu = run_timed(CLI + [
        "pick", "--model", model, "--micrographs", *micrographs, "--out", out,
        "--threshold", str(threshold), "--tta", str(copies), "--device", "cpu",
        "--threads", "1", "--overwrite"])
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}


def measure(model, copies, work):
    train, test = evaluate.split()
    train_stems = [evaluate.stem(p) for p in train]
    test_stems = [evaluate.stem(p) for p in test]
    low, default = (os.path.join(work, "tta%d_%s" % (copies, name))
                    for name in ("low", "default"))
    timing = {"test_at_%g" % PICK_CONFIDENCE: pick(model, test, low, PICK_CONFIDENCE, copies),
              "test_at_%g" % DEFAULT_THRESHOLD: pick(model, test, default, DEFAULT_THRESHOLD,
                                                     copies)}
    pick(model, train, low, PICK_CONFIDENCE, copies)
    result = evaluate.evaluate(low, test_stems, DEFAULT_THRESHOLD)
    as_picked = evaluate.evaluate(default, test_stems, DEFAULT_THRESHOLD)
    threshold, train_figures = evaluate.best_threshold(low, train_stems)
    tuned = evaluate.evaluate(low, test_stems, threshold)
    result.update({
        "picked_at_%g" % DEFAULT_THRESHOLD: {"at_27px": as_picked["at_27px"],
                                              "at_54px": as_picked["at_54px"]},
        "at_threshold_chosen_on_training_micrographs": {
            "threshold": round(threshold, 4), "train_figures_at_27px": train_figures,
            "at_27px": tuned["at_27px"], "at_54px": tuned["at_54px"]},
        "pick_16_test_micrographs": timing})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a picker's model.pt")
    parser.add_argument("--copies", type=int, nargs="+", default=list(COPIES),
                        choices=COPIES)
    parser.add_argument("--work", default="benchmarks/work/picking/tta")
    parser.add_argument("--out", required=True, help="JSON result")
    args = parser.parse_args(argv)
    os.environ["YOLO_OFFLINE"] = "1"
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            results = json.load(handle)
    results["model"] = args.model
    for copies in args.copies:
        results["tta%d" % copies] = measure(args.model, copies, args.work)
        evaluate.save_result(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
