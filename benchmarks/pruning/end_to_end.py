"""End to end (issue 12): the picking benchmark's picks on the 16 test
micrographs before and after pruning, scored with
benchmarks/picking/evaluate.py, and what pruning removed.

The pruner starts as the plugin's does without ImageNet weights, from
scratch: run.py's "random init" with 200 examples per class, trained on
windows of the first 4 micrographs (the simulated base scored below it, see
pretraining.py), at the pruner training's automatic input from scratch (64
px windows and input) and scored with the prune command's test-time copies
(4); the first rows ran at 48 px with one copy (`--size 48 --copies 1`).
Every pick at a confidence of at least the lowest picker threshold gets its
particle probability once; then, at each picker threshold (the CLI default
0.25 and a low one):

- before: the picks at or above the picker threshold;
- pruned: those whose particle probability is at least 0.5 (the protocol's
  default), or at least the probability threshold that maximises F1 on the
  picks of the 4 training micrographs;
- combined: those whose confidence x particle probability is at least the
  threshold that maximises F1 on the training micrographs' picks;
- for reference, the picker alone at the confidence threshold that
  maximises F1 on the training micrographs.

The training micrographs' labelled particles are among the pruner's
training windows, so thresholds chosen there are if anything optimistic.
What pruning removed is counted per class of error_analysis.py (false
positives: artefact band, unlabelled margin, duplicate, off-centre,
background by brightness) and, for true positives, by the label's
surroundings (crowded, low contrast, other).

    nice -n 10 python benchmarks/pruning/end_to_end.py --picks PICKS [--size 64]
        [--copies 4] [--epochs 20] [--false-picks] [--out JSON] [--work DIR]
        [--png docs/pruning_removed.png]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "picking"))
import data  # noqa: E402
import error_analysis  # noqa: E402
import evaluate  # noqa: E402
import run  # noqa: E402

from cryoprune_scipion.engine import pruning  # noqa: E402
from cryoprune_scipion.engine.dihedral import TTA_COPIES  # noqa: E402
from cryoprune_scipion.engine.io import read_micrograph  # noqa: E402
from cryoprune_scipion.engine.windows import extract_windows  # noqa: E402

PICKER_THRESHOLDS = (0.25, 0.1)
DEFAULT_PRUNE_THRESHOLD = 0.5       # the prune protocol's default
SHOTS = 200
FALSE_PICK = "falsepick"


def false_pick_windows(picks_dir, stems, size, bands):
    """Windows at the picker's false positives on the training micrographs
    (confidence >= the lowest picker threshold): between the labels,
    off-centre and duplicates, not those in the unlabelled margin or the
    artefact band, where no label says what they are or the edge class
    already covers them."""
    threshold = min(PICKER_THRESHOLDS)
    out = []
    for name in stems:
        m = error_analysis.Micrograph(name, picks_dir, bands)
        false = m.picks[m.kept(threshold) & (m.assigned < 0)]
        keep = ~np.isin(m.false_positive_classes(threshold),
                        ["unlabelled margin", "artefact band"])
        image = read_micrograph(os.path.join(evaluate.DATA_DIR, "micrographs", name + ".jpg"))
        windows, _ = extract_windows(image, false[keep, :2], data.BOX)
        out.append(data.downsample(windows, size))
    return np.concatenate(out)


def pruner(size, epochs, false_picks=None):
    """The pruner on `size` px windows and input, trained `epochs` epochs
    (0: run.py's rule), with the false picks as a fifth class when given,
    and the seconds its training took (0 when it was saved)."""
    suffix = (("" if size == run.SIZE else "_%dpx" % size)
              + ("" if false_picks is None else "_falsepicks")
              + ("_%depochs" % epochs if epochs else ""))
    path = os.path.join(run.WORK, "real_%d_scratch%s" % (SHOTS, suffix), "model.pt")
    if os.path.exists(path):
        return pruning.load(path) + (0.0,)
    start = time.time()
    train_windows, _ = run.real_windows(size=size)
    classes = list(data.REAL_CLASSES)
    if false_picks is not None:
        train_windows = dict(train_windows, **{FALSE_PICK: false_picks})
        classes.append(FALSE_PICK)
    settings = pruning.TrainSettings(input_size=size, few_shot=SHOTS, aux_weight=0.5,
                                     epochs=epochs or run.epochs_for(
                                         int(0.8 * SHOTS * len(classes))),
                                     batch=32)
    network, metadata = pruning.train(run.as_dataset(train_windows, classes), settings)
    pruning.save(network, metadata, os.path.dirname(path))
    return network, metadata, time.time() - start


def particle_probabilities(picks_dir, stems, floor, network, metadata, copies):
    """Per micrograph, its picks (x, y, confidence, as read) and the particle
    probability of those at confidence >= floor (NaN below), averaged over
    `copies` test-time copies."""
    picks, probabilities = {}, {}
    for name in stems:
        picks[name] = evaluate.read_picks(picks_dir, name)
        probability = np.full(len(picks[name]), np.nan)
        scored = picks[name][:, 2] >= floor
        if scored.any():
            image = read_micrograph(os.path.join(evaluate.DATA_DIR, "micrographs",
                                                 name + ".jpg"))
            windows, _ = extract_windows(image, picks[name][scored, :2], data.BOX)
            probability[scored] = pruning.predict_probabilities(
                network, data.downsample(windows, metadata["input_size"]),
                metadata["input_size"], copies=copies)[:, 0]
        probabilities[name] = probability
    return picks, probabilities


def write_folder(folder, picks, keep, score=None):
    """The kept picks of each micrograph, scored by `score` (default: the
    picker's confidence)."""
    for name in picks:
        values = picks[name][:, 2] if score is None else score[name]
        error_analysis.write_picks(folder, name, np.column_stack(
            [picks[name][:, :2], values])[keep[name]])
    return folder


def chosen_threshold(folder, picks, keep, score, train):
    """The threshold on `score` maximising F1 on the training micrographs."""
    threshold, _ = evaluate.best_threshold(
        write_folder(folder, picks, keep, score), train)
    return threshold


def figures(folder, test, threshold):
    result = evaluate.evaluate(folder, test, threshold)
    return {"picks_per_micrograph": result["picks_per_micrograph"],
            **{r: {k: result[r][k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")}
               for r in ("at_27px", "at_54px")}}


def settings_at(threshold, picks, probability, work, train, test):
    """Rows of figures, and the keep masks, at one picker threshold."""
    above = {n: picks[n][:, 2] >= threshold for n in picks}
    product = {n: picks[n][:, 2] * np.nan_to_num(probability[n]) for n in picks}
    folder = os.path.join(work, "at_%g" % threshold)
    chosen_prune = chosen_threshold(folder + "_probability", picks, above, probability, train)
    chosen_product = chosen_threshold(folder + "_product", picks, above, product, train)
    chosen_picker, _ = evaluate.best_threshold(write_folder(folder, picks, above), train)
    masks = {"pruned at %g" % DEFAULT_PRUNE_THRESHOLD:
             {n: above[n] & (probability[n] >= DEFAULT_PRUNE_THRESHOLD) for n in picks},
             "pruned at %.3f (chosen on training)" % chosen_prune:
             {n: above[n] & (probability[n] >= chosen_prune) for n in picks},
             "combined: confidence x probability >= %.3f (chosen on training)"
             % chosen_product: {n: above[n] & (product[n] >= chosen_product) for n in picks}}
    rows = {"before": figures(folder, test, threshold)}
    for index, (name, keep) in enumerate(masks.items()):
        rows[name] = figures(write_folder("%s_%d" % (folder, index), picks, keep), test, 0)
    rows["reference: picker alone at %.3f (chosen on training)" % chosen_picker] = \
        figures(folder, test, chosen_picker)
    return rows, masks


def true_positive_classes(m, threshold):
    """Per kept true positive, its label's surroundings: crowded (another
    label closer than one diameter), low contrast (lowest quarter of the
    micrograph's labels), or other, as error_analysis.py sorts missed labels."""
    tp = np.flatnonzero(m.kept(threshold) & (m.assigned >= 0))
    labels = m.assigned[tp]
    contrast = m.local.at(m.labels, "contrast")
    classes = np.full(len(tp), "other", dtype=object)
    classes[contrast[labels] < np.percentile(contrast, 25)] = "low contrast"
    crowded = error_analysis.nearest_distance(m.labels, m.labels, exclude_self=True) < \
        error_analysis.DIAMETER
    classes[crowded[labels]] = "crowded"
    return tp, classes


def removed_by_class(micrographs, threshold, keep):
    """Per class, how many false and true positives at `threshold` there were
    and how many pruning removed."""
    def tally(table, classes, removed):
        for name, gone in zip(classes, removed):
            entry = table.setdefault(str(name), {"before": 0, "removed": 0})
            entry["before"] += 1
            entry["removed"] += int(gone)
    fp_table, tp_table = {}, {}
    for m in micrographs:
        removed = m.kept(threshold) & ~keep[m.name]
        fp = np.flatnonzero(m.kept(threshold) & (m.assigned < 0))
        tally(fp_table, m.false_positive_classes(threshold), removed[fp])
        tp, classes = true_positive_classes(m, threshold)
        tally(tp_table, classes, removed[tp])
    return {"false_positives": dict(sorted(fp_table.items())),
            "true_positives": dict(sorted(tp_table.items()))}


def draw_removed(path, m, threshold, keep, title):
    """One micrograph with the picks at `threshold` that pruning kept and
    those it removed, removed true positives apart."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from cryoprune_scipion.engine.plots import box_marker_area, draw_micrograph
    kept = m.kept(threshold)
    matched = m.assigned >= 0
    groups = ((kept & keep, "lime", "o", "kept"),
              (kept & ~keep & ~matched, "red", "o", "removed false positive"),
              (kept & ~keep & matched, "magenta", "s", "removed true positive"))
    figure = Figure(figsize=(8, 8.4), dpi=85)
    ax = figure.add_axes((0, 0, 1, 0.95))
    draw_micrograph(ax, read_micrograph(os.path.join(evaluate.DATA_DIR, "micrographs",
                                                     m.name + ".jpg")))
    area = box_marker_area(ax, error_analysis.DIAMETER, m.shape[1], m.shape[0])
    handles = []
    for mask, colour, marker, label in groups:
        ax.scatter(m.picks[mask, 0], m.picks[mask, 1], s=area, marker=marker,
                   facecolors="none", edgecolors=colour, linewidths=1.4)
        handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="none",
                              markeredgecolor=colour, label="%s (%d)" % (label, mask.sum())))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8,
              facecolor="0.3", labelcolor="white")
    figure.suptitle("%s: picks at confidence >= %.2f, %s" % (m.name, threshold, title),
                    fontsize=9)
    figure.savefig(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--picks", required=True,
                        help="picks folder of run_cryoprune.py (<stem>.csv x,y,score, "
                             "training and test micrographs)")
    parser.add_argument("--out", default=os.path.join(HERE, "results_end_to_end.json"))
    parser.add_argument("--png", help="picture of the test micrograph pruning changed most")
    parser.add_argument("--work", default=os.path.join(run.WORK, "end_to_end"),
                        help="folder for the pruned copies of the picks")
    parser.add_argument("--size", type=int, default=pruning.SCRATCH_INPUT_SIZE,
                        help="window and network input px (default: the pruner "
                             "training's from scratch; the first rows: 48)")
    parser.add_argument("--copies", type=int, default=pruning.TTA, choices=TTA_COPIES,
                        help="test-time copies (default: prune's; the first rows: 1)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="pruner training epochs (default: run.py's rule, about "
                             "1,200 window presentations, 6 at 200 per class, as the "
                             "first rows; the training form's: 20)")
    parser.add_argument("--false-picks", action="store_true",
                        help="train the pruner with a fifth class: the picker's false "
                             "picks on the training micrographs (false_pick_windows)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    train_paths, test_paths = evaluate.split()
    train = [evaluate.stem(p) for p in train_paths]
    test = [evaluate.stem(p) for p in test_paths]
    bands = error_analysis.measure_artefact_bands(train_paths + test_paths)
    false_picks = (false_pick_windows(args.picks, train, args.size, bands)
                   if args.false_picks else None)
    network, metadata, train_seconds = pruner(args.size, args.epochs, false_picks)
    start = time.time()
    picks, probability = particle_probabilities(args.picks, train + test,
                                                min(PICKER_THRESHOLDS), network, metadata,
                                                args.copies)
    result = {"picks": os.path.relpath(args.picks), "pruner": "from scratch, %d examples "
              "per class, %d px windows and input, %d epochs, %d test-time copies%s"
              % (SHOTS, args.size, metadata["settings"]["epochs"], args.copies,
                 ", false picks as a junk class (%d windows)" % len(false_picks)
                 if args.false_picks else ""),
              "pruner_training_seconds": round(train_seconds),
              "scoring_seconds": round(time.time() - start), "settings": {}}
    micrographs = [error_analysis.Micrograph(name, args.picks, bands) for name in test]
    for threshold in PICKER_THRESHOLDS:
        rows, masks = settings_at(threshold, picks, probability, args.work, train, test)
        result["settings"]["picker threshold %g" % threshold] = {
            "figures": rows,
            "removed": {name: removed_by_class(micrographs, threshold, keep)
                        for name, keep in masks.items()}}
        run.save(result, args.out)
        if args.png and threshold == PICKER_THRESHOLDS[0]:
            name, keep = list(masks.items())[1]
            m = max(micrographs, key=lambda m: np.count_nonzero(
                m.kept(threshold) & ~keep[m.name]))
            draw_removed(args.png, m, threshold, keep[m.name], name)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
