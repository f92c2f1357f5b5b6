"""Pictures of picks, scores and class averages.

Plain matplotlib, no pyworkflow: each function draws into axes or a figure
that the caller gives (a viewer's plotter, or a `matplotlib.figure.Figure`
saved headless), so the viewers, the demo and the tests draw alike.
"""
import dataclasses

import numpy as np
from matplotlib import colormaps

from .metrics import average_precision, match_picks, precision_recall_curve
from .ranking import ORDERS

BELOW_THRESHOLD_COLOUR = "white"
DISPLAY_SIDE = 1024                   # micrographs are shrunk to at most this for display
SCORE_BINS = np.linspace(0.0, 1.0, 21)


@dataclasses.dataclass
class Picks:
    """Picks of one micrograph or many: centres (px), scores, class names and
    the id of the micrograph of each."""
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    label: np.ndarray
    micrograph: np.ndarray

    @classmethod
    def from_rows(cls, rows):
        """From dicts with x, y, score, class and (optional) micrograph."""
        rows = list(rows)
        return cls(*(np.array([row.get(key, 0) for row in rows]).reshape(len(rows))
                     for key in ("x", "y", "score", "class", "micrograph")))

    def __len__(self):
        return len(self.score)

    def on(self, micrograph):
        """The picks of one micrograph."""
        keep = self.micrograph == micrograph
        return Picks(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))

    def class_names(self):
        return sorted(set(self.label.tolist()))


@dataclasses.dataclass
class ClassAverage:
    number: int
    size: int
    image: np.ndarray
    resolution: float = None        # Angstrom at FRC 0.5, None when unknown
    mean_correlation: float = None


def class_colours(names):
    """One colour per class name, the same in every picture of these
    classes."""
    palette = colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(names))}


def count_above(scores, threshold):
    return int(np.count_nonzero(np.asarray(scores) >= threshold))


# ---------------------------------------------------------------- picks

def draw_micrograph(ax, image):
    """The micrograph in grey, shrunk by block averaging to DISPLAY_SIDE, in
    the coordinates of the full-size micrograph."""
    height, width = image.shape
    step = max(1, int(np.ceil(max(image.shape) / DISPLAY_SIDE)))
    rows, columns = height // step, width // step
    shrunk = image[:rows * step, :columns * step].reshape(rows, step, columns, step)
    shrunk = shrunk.mean(axis=(1, 3))
    low, high = np.percentile(shrunk, [1, 99])
    ax.imshow(shrunk, cmap="gray", vmin=low, vmax=high, extent=(0, width, height, 0),
              interpolation="bilinear")
    ax.set_axis_off()


def box_marker_area(ax, box_size, width, height):
    """Scatter marker area (points squared) of a circle one box across."""
    bbox = ax.get_position()
    figure = ax.get_figure()
    points_per_px = min(bbox.width * figure.get_figwidth() / width,
                        bbox.height * figure.get_figheight() / height) * 72
    return (box_size * points_per_px) ** 2


def draw_picks(ax, image, picks, box_size, threshold=0.0, title="", class_names=None):
    """The micrograph with a circle one box across at each pick: picks
    scoring at least `threshold` in one colour per class, the others in
    grey; the legend counts each."""
    ax.clear()
    draw_micrograph(ax, image)
    area = box_marker_area(ax, box_size, image.shape[1], image.shape[0])
    above = picks.score >= threshold
    class_names = class_names or picks.class_names()
    for name, colour in class_colours(class_names).items():
        mine = above & (picks.label == name)
        ax.scatter(picks.x[mine], picks.y[mine], s=area, facecolors="none",
                   edgecolors=[colour], linewidths=1.2,
                   label="%s (%d)" % (name, np.count_nonzero(mine)))
    ax.scatter(picks.x[~above], picks.y[~above], s=area, facecolors="none",
               edgecolors=BELOW_THRESHOLD_COLOUR, linewidths=0.8, linestyles="dashed",
               label="below %.2f (%d)" % (threshold, np.count_nonzero(~above)))
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8, facecolor="0.3",
              labelcolor="white", markerscale=min(1.0, 12 / np.sqrt(area)))
    heading = "%d of %d picks with score >= %.2f" % (above.sum(), len(picks), threshold)
    ax.set_title("%s\n%s" % (title, heading) if title else heading, fontsize=9)


def picks_figure(figure, image, picks, box_size, threshold=0.0, title="", class_names=None):
    """`draw_picks` on one axes filling `figure`."""
    ax = figure.add_subplot()
    draw_picks(ax, image, picks, box_size, threshold, title, class_names)
    return ax


def add_threshold_slider(figure, ax, image, picks, box_size, threshold, title=""):
    """A slider under the picks that redraws them at the threshold it is
    moved to; keep the returned slider referenced while the window is open."""
    from matplotlib.widgets import Slider
    figure.subplots_adjust(bottom=0.12)
    slider = Slider(figure.add_axes([0.2, 0.03, 0.6, 0.03]), "score threshold", 0.0, 1.0,
                    valinit=threshold)
    names = picks.class_names()

    def redraw(value):
        draw_picks(ax, image, picks, box_size, value, title, names)
        figure.canvas.draw_idle()
    slider.on_changed(redraw)
    return slider


# ---------------------------------------------------------------- scores

def draw_score_histogram(ax, picks, threshold, score_name):
    """Histogram of the scores stacked by class, the threshold as a dashed
    line and the count at or above it."""
    names = picks.class_names()
    colours = class_colours(names)
    scores = [np.clip(picks.score[picks.label == name], 0.0, 1.0) for name in names]
    ax.hist(scores, bins=SCORE_BINS, stacked=True, color=[colours[n] for n in names],
            label=["%s (%d)" % (n, len(s)) for n, s in zip(names, scores)])
    ax.axvline(threshold, color="k", linestyle="--",
               label="threshold %.2f: %d of %d" % (threshold,
                                                  count_above(picks.score, threshold),
                                                  len(picks)))
    ax.set_xlim(0, 1)
    ax.set_xlabel(score_name)
    ax.set_ylabel("picks")
    ax.legend(fontsize=7)


def add_histogram_slider(figure, ax, draw, threshold, on_change=None):
    """A slider under a histogram that `draw(ax, threshold)` draws: moving it
    redraws at the new threshold, then calls `on_change(value)`; keep the
    returned slider referenced while the window is open."""
    from matplotlib.widgets import Slider
    figure.subplots_adjust(bottom=0.2)
    slider = Slider(figure.add_axes([0.2, 0.04, 0.6, 0.03]), "score threshold", 0.0, 1.0,
                    valinit=threshold)

    def redraw(value):
        ax.clear()
        draw(ax, value)
        figure.canvas.draw_idle()
        if on_change is not None:
            on_change(value)
    slider.on_changed(redraw)
    return slider


# ---------------------------------------------------------------- pruner training

def validation_picks(windows, classes):
    """The pruner's validation windows (model.json "validation_windows") as
    Picks: the particle probability as score, the true class as label."""
    scores = np.asarray(windows["particle_probability"], dtype=float)
    return Picks(np.full(len(scores), np.nan), np.full(len(scores), np.nan), scores,
                 np.asarray(classes)[np.asarray(windows["class_index"], dtype=int)],
                 np.full(len(scores), ""))


def draw_validation_histogram(ax, picks, particle_class, threshold):
    """The validation windows' particle probabilities stacked by true class,
    titled with the precision and recall of keeping those at the threshold."""
    from .pruning import binary_metrics
    draw_score_histogram(ax, picks, threshold, "probability of being a particle")
    ax.set_ylabel("validation windows")
    kept = binary_metrics(picks.label == particle_class, picks.score >= threshold,
                          picks.score)
    ax.set_title("validation windows by true class: at %.2f precision %.3f, recall %.3f"
                 % (threshold, kept["precision"], kept["recall"]), fontsize=9)
    return kept


def draw_training_history(loss_ax, accuracy_ax, history, best_epoch):
    """Training and validation loss, and validation accuracy, per epoch; the
    epoch whose network was kept as a dotted line."""
    epochs = [record["epoch"] for record in history]
    loss_ax.plot(epochs, [record["train_loss"] for record in history], label="training")
    if history and "val_loss" in history[0]:
        loss_ax.plot(epochs, [record["val_loss"] for record in history], label="validation")
        accuracy_ax.plot(epochs, [record["val_accuracy"] for record in history],
                         label="validation accuracy (all classes)")
    for ax, ylabel in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
        ax.axvline(best_epoch, color="k", linestyle=":", label="kept: epoch %d" % best_epoch)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)


def match_to_reference(picks, reference, radius):
    """Which picks fall within `radius` of a reference particle, micrograph
    by micrograph, on the micrographs of the reference only: (matched,
    scores of those picks, number of reference particles)."""
    matched, scores = [np.zeros(0, dtype=bool)], [np.zeros(0)]
    for micrograph in sorted(set(reference.micrograph.tolist())):
        mine, truth = picks.on(micrograph), reference.on(micrograph)
        matched.append(match_picks(np.column_stack([mine.x, mine.y]),
                                   np.column_stack([truth.x, truth.y]), radius, mine.score))
        scores.append(mine.score)
    return np.concatenate(matched), np.concatenate(scores), len(reference)


def draw_precision_recall(ax, matched, scores, n_reference, threshold):
    """Precision against recall of the picks ranked by score, the point of
    the threshold marked; average precision in the title."""
    precision, recall, ordered = precision_recall_curve(matched, scores, n_reference)
    ax.plot(recall, precision, color="C0")
    kept = count_above(ordered, threshold)
    if kept:
        ax.plot(recall[kept - 1], precision[kept - 1], "o", color="k",
                label="threshold %.2f: precision %.2f, recall %.2f"
                      % (threshold, precision[kept - 1], recall[kept - 1]))
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (of %d reference particles)" % n_reference)
    ax.set_ylabel("precision")
    ax.set_title("average precision %.3f"
                 % average_precision(matched, scores, n_reference), fontsize=9)


# ---------------------------------------------------------------- classes

def sort_classes(classes, order):
    """By size (largest first) or resolution (best first, ties by mean
    correlation; classes without a resolution last)."""
    if order not in ORDERS:
        raise ValueError("class order %r: use one of %s" % (order, ", ".join(ORDERS)))
    if order == "size":
        return sorted(classes, key=lambda c: (-c.size, c.number))
    return sorted(classes, key=lambda c: (c.resolution is None, c.resolution or 0,
                                          -(c.mean_correlation or 0), c.number))


def class_caption(average):
    caption = "%d: %d ptcls" % (average.number, average.size)
    if average.resolution is not None:
        caption += "\n%.1f A, cc %.2f" % (average.resolution, average.mean_correlation or 0)
    return caption


def draw_class_gallery(figure, classes, order="size", columns=None):
    """The class averages in a grid in `order`, each captioned with its
    number, size and scores; returns the axes, one per class."""
    classes = sort_classes(classes, order)
    columns = columns or int(np.ceil(np.sqrt(len(classes))))
    rows = int(np.ceil(len(classes) / columns))
    figure.set_layout_engine("constrained")
    axes = []
    for index, average in enumerate(classes):
        ax = figure.add_subplot(rows, columns, index + 1)
        ax.imshow(average.image, cmap="gray")
        ax.set_title(class_caption(average), fontsize=7)
        ax.set_axis_off()
        axes.append(ax)
    figure.suptitle("%d classes by %s" % (len(classes), order), fontsize=9)
    return axes
