"""Where the picker goes wrong on the beta-galactosidase test micrographs
(issue 10): false positives and negatives by location, by local and
micrograph brightness and contrast, and duplicates; and what post-processing
of the same picks (no retraining) would change.

Reads a picks folder of `run_cryoprune.py` (picks at confidence 0.01 on the
4 training and 16 test micrographs, `<stem>.csv` with x, y, score) and
matches them to the labels with evaluate.py's matching. At each threshold
(the CLI default 0.25 and the one maximising F1 on the training micrographs)
every false positive gets the first of these that holds:

- artefact band: its centre lies in the band of padding artefacts along the
  micrograph edges, measured from the images (`measure_artefact_bands`);
- unlabelled margin: between the artefact band and the first labels (no
  label lies closer than evaluate.BORDER px to an edge);
- duplicate: within the particle radius (54 px) of a higher-scoring true
  positive;
- off-centre: within the particle radius of a label, beyond the 27 px that
  match;
- background: none of these, between the labels; split by the brightness of
  its neighbourhood (terciles of the micrograph's local mean).

and every false negative (a label no kept pick matched):

- artefact band: as above (no label lies there in this data set);
- taken by a neighbour's pick: a kept pick lies within the particle radius
  but matched another label or none (off-centre or between two particles);
- scored too low: a pick below the threshold lies within 27 px;
- crowded: another label lies closer than one particle diameter;
- low contrast: the local standard deviation at the label is in the lowest
  quarter of that micrograph's labels;
- no pick: none of these.

The levers are rows of figures (evaluate.py's) on post-processed copies of
the picks, written under --work: suppression of picks closer than a distance
to a higher-scoring one (instead of only ultralytics' box IoU), picks
dropped in the measured artefact band or a wider border, scores scaled per
micrograph, each at 0.25 and at the threshold chosen on the training
micrographs.

    nice -n 10 .venv/bin/python benchmarks/picking/error_analysis.py \\
        --picks benchmarks/work/picking/cryoprune_none/picks \\
        --out benchmarks/picking/results_error_analysis.json --png docs/picking_errors.png
"""
import argparse
import json
import os
import sys

import numpy as np
from scipy import ndimage, stats
from scipy.spatial import cKDTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

from cryoprune_scipion.engine.io import read_micrograph  # noqa: E402
from cryoprune_scipion.engine.metrics import assign_picks  # noqa: E402

DIAMETER = evaluate.DIAMETER
PARTICLE_RADIUS = DIAMETER // 2
MATCH_RADIUS = evaluate.RADII[0]
BIN = 4                             # local statistics on the micrograph binned 4 x 4
EDGES = ("left", "top", "right", "bottom")
TERCILES = ("dark", "middle", "bright")
# A row or column belongs to the artefact band while its standard deviation
# differs from the interior's by more than this fraction (the padding repeats
# a strip of texture, whose rows or columns all share one, higher, value).
BAND_DEVIATION = 0.25
SUPPRESSION_RADII = (27, 40, 54, 64, 80)


# ---------------------------------------------------------------- the images

def edge_profiles(image, depth=256):
    """Per edge, the standard deviation of each of the `depth` outermost
    columns (rows) over the middle half of the micrograph, outermost first,
    divided by the median of the interior columns (rows)."""
    rows, columns = image.shape
    middle_rows, middle_columns = slice(rows // 4, 3 * rows // 4), \
        slice(columns // 4, 3 * columns // 4)
    column_std = image[middle_rows].std(axis=0)
    row_std = image[:, middle_columns].std(axis=1)
    profiles = {"left": column_std[:depth], "right": column_std[::-1][:depth],
                "top": row_std[:depth], "bottom": row_std[::-1][:depth]}
    interior = {"left": column_std[middle_columns], "right": column_std[middle_columns],
                "top": row_std[middle_rows], "bottom": row_std[middle_rows]}
    return {edge: profiles[edge] / np.median(interior[edge]) for edge in EDGES}


def measure_artefact_bands(paths):
    """Depth (px) of the band of padding artefacts along each edge: the
    outermost rows or columns whose standard deviation, averaged over the
    micrographs, differs from the interior's by more than BAND_DEVIATION."""
    profiles = [edge_profiles(read_micrograph(p).astype(float)) for p in paths]
    bands = {}
    for edge in EDGES:
        mean = np.mean([p[edge] for p in profiles], axis=0)
        outside = np.flatnonzero(np.abs(mean - 1) > BAND_DEVIATION)
        bands[edge] = int(outside.max()) + 1 if len(outside) else 0
    return bands


def distance_inside(xy, shape, bands=None):
    """Per centre, how far it lies inside the band of its nearest edge (px;
    negative in the band). Without bands: the distance to the nearest edge."""
    bands = bands or dict.fromkeys(EDGES, 0)
    rows, columns = shape
    x, y = xy[:, 0], xy[:, 1]
    return np.min([x - bands["left"], y - bands["top"],
                   columns - 1 - x - bands["right"], rows - 1 - y - bands["bottom"]], axis=0)


class LocalStatistics:
    """Mean and standard deviation of the micrograph around any point, over
    a window of one particle diameter (contrast) or two (brightness of the
    neighbourhood), on the micrograph binned BIN x BIN."""

    def __init__(self, image, bands):
        rows, columns = (s // BIN for s in image.shape)
        binned = image[:rows * BIN, :columns * BIN].reshape(rows, BIN, columns, BIN)
        binned = binned.mean(axis=(1, 3))
        self.brightness = ndimage.uniform_filter(binned, 2 * DIAMETER // BIN)
        mean = ndimage.uniform_filter(binned, DIAMETER // BIN)
        square = ndimage.uniform_filter(binned ** 2, DIAMETER // BIN)
        self.contrast = np.sqrt(np.maximum(square - mean ** 2, 0))
        grid_y, grid_x = np.mgrid[:rows, :columns] * BIN + BIN / 2
        inside = distance_inside(np.column_stack([grid_x.ravel(), grid_y.ravel()]),
                                 image.shape, bands) > 0
        self.brightness_terciles = np.percentile(self.brightness.ravel()[inside], [100 / 3,
                                                                                   200 / 3])

    def at(self, xy, field):
        rows, columns = getattr(self, field).shape
        i = np.clip((xy[:, 1] // BIN).astype(int), 0, rows - 1)
        j = np.clip((xy[:, 0] // BIN).astype(int), 0, columns - 1)
        return getattr(self, field)[i, j]

    def brightness_tercile(self, xy):
        """0 dark, 1 middle, 2 bright, relative to the micrograph's interior."""
        return np.searchsorted(self.brightness_terciles, self.at(xy, "brightness"))


# ---------------------------------------------------------------- one micrograph

class Micrograph:
    """The picks of one micrograph matched at MATCH_RADIUS (by score, as
    evaluate.py does), its labels and its local statistics."""

    def __init__(self, name, picks_dir, bands):
        self.name = name
        self.picks = evaluate.read_picks(picks_dir, name)
        self.labels = evaluate.read_labels(name)
        self.assigned = assign_picks(self.picks[:, :2], self.labels, MATCH_RADIUS,
                                     self.picks[:, 2])
        image = read_micrograph(os.path.join(evaluate.DATA_DIR, "micrographs",
                                             name + ".jpg")).astype(float)
        self.shape = image.shape
        self.bands = bands
        interior = image[bands["top"]:image.shape[0] - bands["bottom"],
                         bands["left"]:image.shape[1] - bands["right"]]
        self.mean, self.std = float(interior.mean()), float(interior.std())
        self.local = LocalStatistics(image, bands)

    def kept(self, threshold):
        return self.picks[:, 2] >= threshold

    def false_positive_classes(self, threshold):
        """Class name of each kept unmatched pick (module docstring)."""
        kept = self.kept(threshold)
        tp = kept & (self.assigned >= 0)
        fp = np.flatnonzero(kept & (self.assigned < 0))
        xy = self.picks[fp, :2]
        classes = np.array(["background, %s" % TERCILES[t]
                            for t in self.local.brightness_tercile(xy)], dtype=object)
        near_label = nearest_distance(xy, self.labels) <= PARTICLE_RADIUS
        classes[near_label] = "off-centre"
        duplicate = np.array([_has_higher_neighbour(self.picks, i, tp) for i in fp],
                             dtype=bool)
        classes[duplicate] = "duplicate"
        classes[distance_inside(xy, self.shape, label_free_margin()) < 0] = "unlabelled margin"
        classes[distance_inside(xy, self.shape, self.bands) < 0] = "artefact band"
        return classes

    def missed(self, threshold):
        """Indices of the labels no pick at or above `threshold` matched."""
        found = np.zeros(len(self.labels), dtype=bool)
        found[self.assigned[self.kept(threshold) & (self.assigned >= 0)]] = True
        return np.flatnonzero(~found)

    def false_negative_classes(self, threshold):
        kept = self.kept(threshold)
        missed = self.missed(threshold)
        xy = self.labels[missed]
        classes = np.full(len(missed), "no pick", dtype=object)
        contrast = self.local.at(self.labels, "contrast")
        low = contrast[missed] < np.percentile(contrast, 25)
        classes[low] = "low contrast"
        classes[nearest_distance(xy, self.labels, exclude_self=True) < DIAMETER] = "crowded"
        below = self.picks[~kept]
        classes[nearest_distance(xy, below[:, :2]) <= MATCH_RADIUS] = "scored too low"
        unmatched_kept = self.picks[kept & (self.assigned < 0)]
        classes[nearest_distance(xy, unmatched_kept[:, :2]) <= PARTICLE_RADIUS] = \
            "taken by a neighbour's pick"
        classes[distance_inside(xy, self.shape, self.bands) < 0] = "artefact band"
        return classes, contrast[missed], contrast

    def figures(self, threshold):
        kept = self.kept(threshold)
        tp = int(np.count_nonzero(kept & (self.assigned >= 0)))
        return evaluate.figures(tp, int(kept.sum()) - tp, len(self.labels) - tp)


def label_free_margin():
    """The band along the edges where no micrograph has a label."""
    return dict.fromkeys(EDGES, evaluate.BORDER)


def nearest_distance(xy, others, exclude_self=False):
    if not len(others):
        return np.full(len(xy), np.inf)
    distances, _ = cKDTree(others).query(xy, k=2 if exclude_self else 1)
    return distances[:, 1] if exclude_self else distances


def _has_higher_neighbour(picks, i, candidates):
    """Whether a pick among `candidates` (a mask) scoring higher than pick i
    lies within the particle radius of it."""
    distance = np.hypot(*(picks[:, :2] - picks[i, :2]).T)
    return bool(np.any(candidates & (picks[:, 2] > picks[i, 2])
                       & (distance <= PARTICLE_RADIUS)))


# ---------------------------------------------------------------- the analysis

def breakdown(micrographs, threshold):
    """Counts and fractions of the false positive and negative classes, and
    the local contrast and brightness of what was found and what was missed."""
    fp, fn, tp_bright, fn_bright, fn_contrast_quantile = [], [], [], [], []
    for m in micrographs:
        fp.extend(m.false_positive_classes(threshold))
        classes, missed_contrast, contrast = m.false_negative_classes(threshold)
        fn.extend(classes)
        fn_contrast_quantile.extend(stats.percentileofscore(contrast, missed_contrast) / 100)
        tp = m.picks[m.kept(threshold) & (m.assigned >= 0)]
        tp_bright.extend(m.local.brightness_tercile(tp[:, :2]))
        fn_bright.extend(m.local.brightness_tercile(m.labels[m.missed(threshold)]))
    terciles = np.array(TERCILES)
    return {"false_positives": _shares(fp), "false_negatives": _shares(fn),
            "true_positives_by_brightness_tercile": _shares(
                terciles[np.array(tp_bright, dtype=int)]),
            "false_negatives_by_brightness_tercile": _shares(
                terciles[np.array(fn_bright, dtype=int)]),
            "median_contrast_quantile_of_missed_labels": round(
                float(np.median(fn_contrast_quantile)), 3)}


def _shares(classes):
    names, counts = np.unique(np.asarray(classes, dtype=str), return_counts=True)
    total = int(counts.sum())
    return {"total": total} | {str(n): {"count": int(c), "share": round(c / total, 3)}
                               for n, c in sorted(zip(names, counts), key=lambda t: -t[1])}


def per_micrograph(micrographs, threshold):
    rows = [{"micrograph": m.name, "mean": round(m.mean, 1), "std": round(m.std, 1),
             **m.figures(threshold)} for m in micrographs]
    correlations = {}
    for figure in ("recall", "precision", "f1"):
        for image_figure in ("mean", "std"):
            rho, p = stats.spearmanr([r[image_figure] for r in rows],
                                     [r[figure] for r in rows])
            correlations["%s_vs_%s" % (figure, image_figure)] = {
                "spearman": round(float(rho), 3), "p": round(float(p), 4)}
    return {"rows": rows, "correlations": correlations}


# ---------------------------------------------------------------- levers

def suppress_close(picks, radius):
    """The picks (rows x, y, score) without those within `radius` of a
    higher-scoring kept pick, in the input order."""
    order = np.argsort(-picks[:, 2], kind="stable")
    tree = cKDTree(picks[:, :2])
    suppressed = np.zeros(len(picks), dtype=bool)
    for i in order:
        if not suppressed[i]:
            near = np.array(tree.query_ball_point(picks[i, :2], radius), dtype=int)
            suppressed[near[picks[near, 2] <= picks[i, 2]]] = True
            suppressed[i] = False
    return picks[~suppressed]


def inside(picks, shape, bands):
    """The picks (rows x, y, score) outside the bands (px from each edge)."""
    return picks[distance_inside(picks[:, :2], shape, bands) >= 0]


def scale_scores(picks_dir, stems, train, quantile=75, floor=0.25):
    """Per micrograph, a function multiplying the scores by the factor that
    brings the `quantile` of its scores at or above `floor` to the median of
    that level on the training micrographs: one threshold for bright and
    dark micrographs alike, if their scores differ by a factor."""
    def level(stem):
        scores = evaluate.read_picks(picks_dir, stem)[:, 2]
        return np.percentile(scores[scores >= floor], quantile)
    levels = {stem: level(stem) for stem in stems}
    reference = np.median([levels[stem] for stem in train])
    return {stem: (lambda p, f=reference / levels[stem]: np.column_stack(
        [p[:, :2], np.clip(p[:, 2] * f, 0, 1)])) for stem in stems}


def write_picks(folder, name, picks):
    os.makedirs(folder, exist_ok=True)
    np.savetxt(os.path.join(folder, name + ".csv"), picks, fmt="%.2f,%.2f,%.5f",
               header="x,y,score", comments="")


def lever_row(name, picks_dir, train, test):
    """Figures at 0.25 and at the threshold chosen on the training micrographs."""
    row = {"lever": name}
    row["at_0.25"] = evaluate.evaluate(picks_dir, test, 0.25)
    threshold, _ = evaluate.best_threshold(picks_dir, train)
    row["at_threshold_chosen_on_training"] = evaluate.evaluate(picks_dir, test, threshold)
    for key in ("at_0.25", "at_threshold_chosen_on_training"):
        figures = row[key]
        row[key] = {"threshold": round(figures["threshold"], 4),
                    **{r: {k: figures[r][k] for k in ("precision", "recall", "f1",
                                                      "average_precision")}
                       for r in ("at_27px", "at_54px")}}
    return row


def levers(picks_dir, work, train, test, shape, bands):
    """Rows of figures on post-processed copies of the picks; each variant
    changes the picks (rows x, y, score) of one micrograph."""
    def border(px):
        return lambda p, stem: inside(p, shape, dict.fromkeys(EDGES, px))

    def suppression(radius, first=lambda p, stem: p):
        return lambda p, stem: suppress_close(first(p, stem), radius)
    artefact_band = lambda p, stem: inside(p, shape, bands)  # noqa: E731
    label_margin = evaluate.BORDER - MATCH_RADIUS  # a pick there can still match a label
    scaling = scale_scores(picks_dir, train + test, train)
    variants = {"as picked (NMS IoU 0.5, border 64 px)": lambda p, stem: p}
    for radius in SUPPRESSION_RADII:
        variants["centre-distance suppression %d px" % radius] = suppression(radius)
    variants["border: the measured artefact band"] = artefact_band
    for px in (96, label_margin, evaluate.BORDER):
        variants["border %d px" % px] = border(px)
    variants["artefact band and suppression %d px" % PARTICLE_RADIUS] = \
        suppression(PARTICLE_RADIUS, artefact_band)
    variants["border %d px and suppression %d px" % (label_margin, PARTICLE_RADIUS)] = \
        suppression(PARTICLE_RADIUS, border(label_margin))
    variants["per-micrograph score scaling"] = lambda p, stem: scaling[stem](p)
    rows = []
    for index, (name, change) in enumerate(variants.items()):
        folder = os.path.join(work, "lever_%d" % index)
        for stem in train + test:
            write_picks(folder, stem, change(evaluate.read_picks(picks_dir, stem), stem))
        rows.append(lever_row(name, folder, train, test))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------- picture

def draw_errors(path, micrograph, threshold):
    """One micrograph with the true, false and missed picks at `threshold`,
    the artefact band and the unlabelled margin outlined."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from cryoprune_scipion.engine.plots import box_marker_area, draw_micrograph
    m = micrograph
    kept = m.kept(threshold)
    tp, fp = m.picks[kept & (m.assigned >= 0)], m.picks[kept & (m.assigned < 0)]
    figure = Figure(figsize=(8, 8.4), dpi=90)
    ax = figure.add_axes((0, 0, 1, 0.95))
    draw_micrograph(ax, read_micrograph(os.path.join(evaluate.DATA_DIR, "micrographs",
                                                     m.name + ".jpg")))
    area = box_marker_area(ax, DIAMETER, m.shape[1], m.shape[0])
    for xy, colour, label in ((tp, "lime", "true positive"), (fp, "red", "false positive"),
                              (m.labels[m.missed(threshold)], "cyan", "missed label")):
        ax.scatter(xy[:, 0], xy[:, 1], s=area, facecolors="none", edgecolors=colour,
                   linewidths=0.9)
    rows, columns = m.shape
    for bands, style in ((m.bands, "-"), (label_free_margin(), "--")):
        ax.add_patch(Rectangle((bands["left"], bands["top"]),
                               columns - bands["left"] - bands["right"],
                               rows - bands["top"] - bands["bottom"], fill=False,
                               edgecolor="yellow", linestyle=style, linewidth=0.8))
    figures = m.figures(threshold)
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                      markeredgecolor=c, label="%s (%d)" % (t, n))
               for c, t, n in (("lime", "true positive", figures["tp"]),
                               ("red", "false positive", figures["fp"]),
                               ("cyan", "missed label", figures["fn"]))]
    handles += [Line2D([], [], color="yellow", linestyle="-", label="artefact band"),
                Line2D([], [], color="yellow", linestyle="--", label="first labels")]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8,
              facecolor="0.3", labelcolor="white")
    figure.suptitle("%s: picks at score >= %.2f, matched within %d px; precision %.2f, "
                    "recall %.2f" % (m.name, threshold, MATCH_RADIUS, figures["precision"],
                                     figures["recall"]), fontsize=9)
    figure.savefig(path)


# ---------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--picks", required=True, help="picks folder of run_cryoprune.py")
    parser.add_argument("--out", required=True, help="JSON result")
    parser.add_argument("--png", help="picture of one test micrograph")
    parser.add_argument("--png-micrograph", help="its name (default: the test micrograph "
                                                 "of lowest recall at 0.25)")
    parser.add_argument("--work", default="benchmarks/work/picking/error_analysis",
                        help="folder for the post-processed picks of the levers")
    args = parser.parse_args(argv)
    train_paths, test_paths = evaluate.split()
    train = [evaluate.stem(p) for p in train_paths]
    test = [evaluate.stem(p) for p in test_paths]
    bands = measure_artefact_bands(train_paths + test_paths)
    micrographs = [Micrograph(name, args.picks, bands) for name in test]
    chosen, _ = evaluate.best_threshold(args.picks, train)
    oracle, _ = evaluate.best_threshold(args.picks, test)
    result = {"picks": args.picks, "artefact_band_px": bands,
              "artefact_band_rule": "outermost rows/columns whose standard deviation, "
                                    "averaged over the 20 micrographs, differs from the "
                                    "interior's by more than %d %%" % (100 * BAND_DEVIATION),
              "first_labels_px_from_edge": evaluate.BORDER}
    for key, threshold in (("at_0.25", 0.25), ("at_threshold_chosen_on_training", chosen),
                           ("at_best_threshold_on_test_for_reference", oracle)):
        result[key] = {"threshold": round(threshold, 4),
                       **breakdown(micrographs, threshold),
                       "per_micrograph": per_micrograph(micrographs, threshold)}
    result["levers"] = levers(args.picks, args.work, train, test, micrographs[0].shape,
                              bands)
    evaluate.save_result(result, args.out)
    if args.png:
        name = args.png_micrograph or min(
            micrographs, key=lambda m: m.figures(0.25)["recall"]).name
        draw_errors(args.png, next(m for m in micrographs if m.name == name), 0.25)


if __name__ == "__main__":
    sys.exit(main())
