"""Training curves of the YOLO training protocol."""
import csv
import os

from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from ..protocols.protocol_yolo_training import CryoPruneProtYoloTraining

# ultralytics' column names in metrics.csv and their labels
QUALITY_COLUMNS = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
                   "metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95"}
LOSS_COLUMNS = {"train/box_loss": "box (train)", "train/cls_loss": "class (train)",
                "val/box_loss": "box (validation)", "val/cls_loss": "class (validation)"}


def readTrainingMetrics(path):
    """Columns of a per-epoch metrics CSV as lists of floats."""
    with open(path, newline="") as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    return {column: [float(row[column]) for row in rows] for column in rows[0]} if rows else {}


def plotTrainingMetrics(path):
    """An EmPlotter with precision, recall and mAP per epoch, and the losses."""
    from pwem.viewers import EmPlotter
    metrics = readTrainingMetrics(path)
    plotter = EmPlotter(x=2, y=1, windowTitle="YOLO training")
    for title, ylabel, columns in [("Validation", "value", QUALITY_COLUMNS),
                                   ("Losses", "loss", LOSS_COLUMNS)]:
        axes = plotter.createSubPlot(title, "epoch", ylabel)
        for column, label in columns.items():
            if column in metrics:
                axes.plot(metrics["epoch"], metrics[column], label=label)
        axes.legend()
    return plotter


class CryoPruneYoloTrainingViewer(Viewer):
    """Per-epoch precision, recall, mAP and losses of a YOLO training run."""
    _label = "training curves"
    _environments = [DESKTOP_TKINTER]
    _targets = [CryoPruneProtYoloTraining]

    def _visualize(self, obj, **kwargs):
        path = obj._getExtraPath("model", "metrics.csv")
        if not os.path.isfile(path):
            return [self.infoMessage("No training metrics yet: %s does not exist" % path,
                                     title="YOLO training")]
        return [plotTrainingMetrics(path)]
