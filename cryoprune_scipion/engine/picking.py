"""YOLO particle picking: a dataset of preprocessed micrographs with one box
per labelled particle, training with ultralytics, and detection mapped back
to micrograph pixels.

A trained model is a folder: `model.pt` (the weights) and `model.json` (view
classes, box size, preprocessing settings, tile size, final metrics, the
picking threshold chosen on the validation strips for each number of
test-time copies, and, when the preprocessing was chosen by validation,
both candidates' figures).
"""
import dataclasses
import functools
import glob
import json
import logging
import os
import shutil
import time
from collections import Counter

import numpy as np

from ..constants import MODEL_METADATA, MODEL_WEIGHTS
from .coordinates import DUPLICATE_RADIUS, sanitize_coordinates
from .dihedral import TTA_COPIES, dihedral_copies, dihedral_copy
from .io import (InputError, micrograph_stem, read_coordinates, read_micrograph,
                 read_model_metadata, replacing, write_json, write_table)
from .metrics import PickingScore, assign_picks
from .preprocess import (PreprocessSettings, preprocess_micrograph_files,
                         save_png)
from .training_state import EpochLog, check_same_run, fingerprint

logger = logging.getLogger(__name__)

DEFAULT_CLASS = "particle"
PICK_FIELDS = ["x", "y", "score", "class"]
DATASET_DESCRIPTION = "dataset.json"
FINISHED = "finished"
# fraction of the box within which two centres are one particle: detections
# in copies of a micrograph fused, a pick matched to a label
SAME_PARTICLE = 0.25
# Validation: a strip of each labelled micrograph along one side, the side
# turning from one micrograph to the next, when the strips hold enough
# labelled particles; the picking threshold is chosen there among these
STRIP_SIDES = ("right", "bottom", "left", "top")
THRESHOLD_CHOICES = tuple(round(0.05 * step, 2) for step in range(1, 20))
VALIDATION_MIN_PARTICLES = 20
STRIPS = "strips"
PREPROCESSING_TRIALS = "preprocessing_trials"
METRICS_CSV = "metrics.csv"
# ultralytics' columns of the validation figures
METRIC_COLUMNS = {"precision": "metrics/precision(B)", "recall": "metrics/recall(B)",
                  "mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)"}


# ultralytics settings that send data away whether or not it thinks it is
# online: Ultralytics Platform (api_key), the experiment trackers it starts
# when their package is installed, and usage analytics and error reports
# (sync; these also wait for the online check, which a process that imported
# ultralytics before import_yolo may have passed).
ULTRALYTICS_REPORTING = {"sync": False, "api_key": "", "clearml": False, "comet": False,
                         "dvc": False, "mlflow": False, "raytune": False,
                         "tensorboard": False, "wandb": False}


def import_yolo():
    """ultralytics' YOLO class, kept from opening any network connection.

    YOLO_OFFLINE, read when ultralytics is first imported, makes its online
    check (a DNS lookup) answer "offline", which turns off the pip update
    check, package auto-install, analytics and error reports. The reporting
    settings are changed in memory only: the user's settings.json is left as
    it is. What no setting reaches is patched: the font check of every
    training dataset, which asks GitHub for Arial.ttf, and the download of a
    weights file or dataset that is not here."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.pop("ULTRALYTICS_API_KEY", None)  # would stream training to the Platform
    from ultralytics import YOLO
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import SETTINGS, checks, downloads, plotting
    dict.update(SETTINGS, ULTRALYTICS_REPORTING)  # dict's update: SETTINGS.update saves
    for module in (checks, data_utils, plotting):
        module.check_font = _matplotlib_font
    downloads.safe_download = data_utils.safe_download = _refuse_download
    downloads.get_github_assets = _no_release_assets
    return YOLO


def _matplotlib_font(font="Arial.ttf"):
    """matplotlib's DejaVu Sans, in place of the Arial ultralytics downloads
    for the labels of its plots."""
    from matplotlib import font_manager
    return font_manager.findfont("DejaVu Sans")


def _refuse_download(url="", *args, **kwargs):
    raise FileNotFoundError("%s is not here and cryoprune downloads nothing: give a local "
                            "file" % (kwargs.get("file") or url))


def _no_release_assets(*args, **kwargs):
    """ultralytics' answer when GitHub cannot be asked for release assets."""
    return "", []


def centres_to_micrograph(centres, grid, origin=(0, 0)):
    """Micrograph pixels (x, y) of box centres in the continuous coordinates
    of the working image, or of a tile whose top-left corner is at `origin`
    (row, column); continuous means pixel i spans [i, i + 1), as in YOLO."""
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    return grid.to_original(centres[:, 0] + origin[1] - 0.5,
                            centres[:, 1] + origin[0] - 0.5)


def read_training_coordinates(micrographs, coords_dir, class_names=None):
    """Per-micrograph coordinates from `coords_dir/<stem>.csv` and the class
    list. Micrographs without a CSV, or with an empty one, are left out;
    coordinates off the micrograph are dropped and repeated ones merged
    (`usable_coordinates`)."""
    labelled = {}
    for path in micrographs:
        csv_path = os.path.join(coords_dir, micrograph_stem(path) + ".csv")
        rows = read_coordinates(csv_path) if os.path.isfile(csv_path) else []
        if rows:
            labelled[path] = rows
    if not labelled:
        raise InputError("no coordinates for any of the %d micrographs in %s; each "
                         "micrograph needs a file <micrograph name>.csv with x,y columns"
                         % (len(micrographs), coords_dir))
    labelled = usable_coordinates(labelled, coords_dir)
    skipped = [path for path in micrographs if path not in labelled]
    found = sorted({row.get("class") or DEFAULT_CLASS
                    for rows in labelled.values() for row in rows})
    if class_names:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise InputError("coordinates of class %s are not among the classes %s; "
                             "fix the class column or add the name to --classes"
                             % (", ".join(unknown), ",".join(class_names)))
    return labelled, skipped, list(class_names or found)


def usable_coordinates(labelled, coords_dir):
    """The rows of each micrograph whose centre lies on the micrograph, each
    particle once; the drops are logged per micrograph and in total.

    A particle whose box crosses the micrograph edge keeps its label (its
    box is clipped): it is a particle in the image, and without its label
    the detector would learn it as background. Picking drops such picks
    later, as their windows cannot be extracted whole."""
    usable, totals, shapes = {}, Counter(), set()
    for path, rows in labelled.items():
        shape = read_micrograph(path).shape
        shapes.add(shape)
        kept, counts = sanitize_coordinates([(r["x"], r["y"]) for r in rows], shape)
        totals.update(counts)
        if counts["outside"] or counts["duplicates"]:
            logger.info("%s: of %d coordinates, %d off the micrograph (%d x %d px) dropped, "
                        "%d repeated (within %g px) merged", path, len(rows),
                        counts["outside"], shape[1], shape[0], counts["duplicates"],
                        DUPLICATE_RADIUS)
        if len(kept):
            usable[path] = [rows[i] for i in kept]
    if not usable:
        x, y = zip(*((r["x"], r["y"]) for rows in labelled.values() for r in rows))
        sizes = ", ".join("%d x %d" % shape[::-1] for shape in sorted(shapes))
        raise InputError("all %d coordinates in %s lie off their micrographs (%s px): they "
                         "span x %.0f to %.0f, y %.0f to %.0f; are they in the pixels of "
                         "binned or other micrographs? Give coordinates in pixels of these "
                         "micrographs" % (totals["outside"], coords_dir, sizes,
                                          min(x), max(x), min(y), max(y)))
    logger.info("training coordinates: %d kept, %d off the micrograph dropped, %d repeated "
                "merged; particles whose box crosses the edge are kept", totals["kept"],
                totals["outside"], totals["duplicates"])
    return usable


def box_in_working(box_size, grid):
    """The side of a box of `box_size` micrograph pixels in working pixels."""
    return box_size * max(grid.scale_x, grid.scale_y)


def tile_size_for(box_size, grid, requested=0):
    """Training tile side in working pixels: a multiple of 32 that holds at
    least four boxes across, no larger than the working image needs."""
    if requested:
        return requested
    box_working = box_in_working(box_size, grid)
    tile = max(256, int(np.ceil(4 * box_working / 32)) * 32)
    return min(tile, int(np.ceil(max(grid.working_shape) / 32)) * 32)


def tile_origins(length, tile, overlap):
    """Start offsets of tiles of `tile` px covering `length` px with at least
    `overlap` px shared; the last tile ends at the image edge."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    origins = list(range(0, length - tile, step))
    return origins + [length - tile]


def cut_tiles(image, labels_xy, class_ids, box_working, tile):
    """Square tiles of the working image (padded with its median where the
    image is smaller) with the YOLO label rows of the particles whose centre
    falls inside; boxes are clipped to the tile."""
    rows, columns = image.shape
    overlap = int(np.ceil(box_working))
    for top in tile_origins(rows, tile, overlap):
        for left in tile_origins(columns, tile, overlap):
            piece = np.full((tile, tile), np.median(image), dtype=image.dtype)
            window = image[top:top + tile, left:left + tile]
            piece[:window.shape[0], :window.shape[1]] = window
            x = labels_xy[:, 0] - left
            y = labels_xy[:, 1] - top
            inside = (x >= 0) & (x < window.shape[1]) & (y >= 0) & (y < window.shape[0])
            half = box_working / 2
            x0, x1 = np.clip(x[inside] - half, 0, tile), np.clip(x[inside] + half, 0, tile)
            y0, y1 = np.clip(y[inside] - half, 0, tile), np.clip(y[inside] + half, 0, tile)
            labels = np.column_stack([class_ids[inside], (x0 + x1) / 2 / tile,
                                      (y0 + y1) / 2 / tile, (x1 - x0) / tile,
                                      (y1 - y0) / tile])
            yield (top, left), piece, labels


def split_regions(shape, val_fraction, side):
    """(training, validation) regions of an image of `shape` (rows, columns),
    each (top, left, bottom, right): a strip of `val_fraction` of the image
    along `side` (of STRIP_SIDES) validates, the rest trains. Validation is
    None when `val_fraction` is 0."""
    rows, columns = shape
    if not val_fraction:
        return (0, 0, rows, columns), None
    far = side in ("right", "bottom")
    if side in ("left", "right"):
        cut = _strip_cut(columns, val_fraction, far)
        near_part, far_part = (0, 0, rows, cut), (0, cut, rows, columns)
    else:
        cut = _strip_cut(rows, val_fraction, far)
        near_part, far_part = (0, 0, cut, columns), (cut, 0, rows, columns)
    return (near_part, far_part) if far else (far_part, near_part)


def _strip_cut(length, val_fraction, far):
    """Where a strip of `val_fraction` of `length` begins (at the far end) or
    ends (at the near end); at least a pixel in each part."""
    width = min(length - 1, max(1, int(round(length * val_fraction))))
    return length - width if far else width


def write_yolo_dataset(labelled, class_names, box_size, settings, out_dir,
                       val_fraction=0.2, tile=0, threads=1, seed=0):
    """Tiles of the preprocessed micrographs and their YOLO labels under
    `out_dir`: a strip of `val_fraction` of each micrograph validates, the
    rest trains.

    Tiles keep the working scale (ultralytics rescales images to its image
    size, so every tile is exactly `tile` px square), which gives a few
    micrographs many training steps per epoch; picking then runs on whole
    working images at the same scale. Each validation strip is also kept
    whole with its labels (out_dir/strips), to choose the picking threshold
    on. Returns data.yaml, the tile size and the number of micrographs
    trained and validated on (0 with `val_fraction` 0: then the training
    tiles validate)."""
    paths = sorted(labelled)
    processed = dict(zip(paths, preprocess_micrograph_files(paths, settings, threads,
                                                            box_size)))
    for path, (_, grid) in processed.items():
        _check_box(path, box_size, grid)
    tile = tile_size_for(box_size, next(iter(processed.values()))[1], tile)
    centres = {path: np.column_stack(grid.to_working([r["x"] for r in labelled[path]],
                                                     [r["y"] for r in labelled[path]])) + 0.5
               for path, (_, grid) in processed.items()}
    sides = {path: STRIP_SIDES[(index + seed) % len(STRIP_SIDES)]
             for index, path in enumerate(paths)}
    held_out = sum(_particles_in_strip(centres[path], image.shape, val_fraction, sides[path],
                                       box_in_working(box_size, grid) / 2)
                   for path, (image, grid) in processed.items())
    if val_fraction and held_out < VALIDATION_MIN_PARTICLES:
        logger.info("strips of %g of each micrograph would hold %d annotated particles, too "
                    "few to validate on (%d or more): training on all of each micrograph, "
                    "choosing no picking threshold", val_fraction,
                    held_out, VALIDATION_MIN_PARTICLES)
        val_fraction = 0
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            os.makedirs(os.path.join(out_dir, kind, split), exist_ok=True)
    os.makedirs(os.path.join(out_dir, STRIPS), exist_ok=True)
    for path in paths:
        image, grid = processed[path]
        class_ids = np.array([class_names.index(r.get("class") or DEFAULT_CLASS)
                              for r in labelled[path]], dtype=float)
        box_working = box_in_working(box_size, grid)
        regions = split_regions(image.shape, val_fraction, sides[path])
        for split, region in zip(("train", "val"), regions):
            if region is None:
                continue
            top, left, bottom, right = region
            part = image[top:bottom, left:right]
            shifted = centres[path] - (left, top)
            for (row, column), piece, labels in cut_tiles(part, shifted, class_ids,
                                                          box_working, tile):
                name = "%s_%d_%d" % (micrograph_stem(path), top + row, left + column)
                save_png(os.path.join(out_dir, "images", split, name + ".png"), piece)
                np.savetxt(os.path.join(out_dir, "labels", split, name + ".txt"), labels,
                           fmt=["%d", "%.6f", "%.6f", "%.6f", "%.6f"])
            if split == "val":
                _save_strip(os.path.join(out_dir, STRIPS, micrograph_stem(path)), part,
                            shifted, class_ids, box_working)
    validated = len(paths) if val_fraction else 0
    data_yaml = os.path.join(out_dir, "data.yaml")  # YAML reads JSON
    write_json(data_yaml, {"path": os.path.abspath(out_dir), "train": "images/train",
                           "val": "images/val" if validated else "images/train",
                           "names": class_names})
    return data_yaml, tile, {"train": len(paths), "val": validated}


def _particles_in_strip(centres, shape, val_fraction, side, margin):
    """How many of the particles (working centres) of a micrograph of `shape`
    lie in its validation strip, at least `margin` inside it."""
    strip = split_regions(shape, val_fraction, side)[1]
    if strip is None:
        return 0
    top, left, bottom, right = strip
    return int(np.count_nonzero(_within(centres, (left + margin, top + margin,
                                                  right - margin, bottom - margin))))


def _save_strip(stem, image, centres, class_ids, reach):
    """A validation strip (working image) and the centres (continuous
    coordinates) and class indices of the particles on it or within `reach`
    of it: a particle just outside shows in the strip and its pick there is
    right."""
    rows, columns = image.shape
    x, y = centres.T
    near = (x >= -reach) & (x < columns + reach) & (y >= -reach) & (y < rows + reach)
    with replacing(stem + ".npy") as partial, open(partial, "wb") as f:
        np.save(f, image)
    write_table(stem + ".csv", ["x", "y", "class"],
                [{"x": x, "y": y, "class": int(c)}
                 for (x, y), c in zip(centres[near], class_ids[near])])


def read_strips(dataset_dir):
    """(image, centres (n, 2), class indices (n,)) of each validation strip
    of a dataset, the particles within a box of the strip included."""
    strips = []
    for stem in sorted(glob.glob(os.path.join(dataset_dir, STRIPS, "*.npy"))):
        rows = read_coordinates(stem[:-4] + ".csv")
        centres = np.array([(float(r["x"]), float(r["y"])) for r in rows]).reshape(-1, 2)
        classes = np.array([int(r.get("class") or 0) for r in rows], dtype=int)
        strips.append((np.load(stem), centres, classes))
    return strips


def _check_box(path, box_size, grid):
    rows, columns = grid.original_shape
    if box_size <= 0 or box_size >= min(rows, columns):
        raise InputError("box size %s px does not fit micrograph %s (%d x %d px); give "
                         "a box of about 1.2 to 1.5 particle diameters"
                         % (box_size, path, columns, rows))


def augmentation(enabled):
    """ultralytics augmentation suited to micrographs: any in-plane rotation,
    flips, brightness; no colour, little scaling (particles have one size)."""
    if not enabled:
        return dict(degrees=0, translate=0, scale=0, fliplr=0, flipud=0, mosaic=0,
                    hsv_h=0, hsv_s=0, hsv_v=0, erasing=0)
    return dict(degrees=180, translate=0.1, scale=0.1, fliplr=0.5, flipud=0.5,
                mosaic=1.0, hsv_h=0, hsv_s=0, hsv_v=0.3, erasing=0)


def ultralytics_device(gpu_ids):
    return ",".join(map(str, gpu_ids)) if gpu_ids else "cpu"


@dataclasses.dataclass(frozen=True)
class PickerTraining:
    """Defaults of `train_picker`, read by the CLI and the training form."""
    model: str = "yolov8n"
    epochs: int = 100
    patience: int = 30
    batch: int = 4
    learning_rate: float = 0.005
    tile: int = 0              # 0: room for four boxes, at least 256 px
    val_fraction: float = 0.2  # width of each micrograph's validation strip
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Detection:
    """Defaults of `pick`, read by the CLI and the picking form."""
    threshold: float = 0.25
    iou: float = 0.5
    max_det: int = 3000
    tta: int = 4               # test-time augmentation: dihedral copies averaged


def train_picker(micrographs, coords_dir, box_size, out_dir, settings=None,
                 model=PickerTraining.model, initial_weights=None,
                 epochs=PickerTraining.epochs, patience=PickerTraining.patience,
                 batch=PickerTraining.batch, learning_rate=PickerTraining.learning_rate,
                 tile=PickerTraining.tile, val_fraction=PickerTraining.val_fraction,
                 augment=True, class_names=None, gpu_ids=(), threads=1,
                 seed=PickerTraining.seed, resume=False):
    """Train a YOLO picker; writes out_dir/model.pt, model.json, metrics.csv.

    The training state is the dataset (out_dir/dataset) and ultralytics'
    training folder (out_dir/training, whose weights/last.pt is saved after
    every epoch). With `resume`, the run continues the interrupted run of
    the same settings and coordinates whose state out_dir holds, and starts
    from the beginning when it holds none; the state must not exist
    otherwise. A resumed run whose training had finished (its model.json
    written, its state kept: a preprocessing trial) returns its metadata."""
    settings = settings or PreprocessSettings()
    settings.validate()
    if initial_weights and not os.path.isfile(initial_weights):
        raise InputError("initial weights %s not found; give a local .pt file or "
                         "leave it empty to train from scratch" % initial_weights)
    labelled, skipped, class_names = read_training_coordinates(
        micrographs, coords_dir, class_names)
    if skipped:
        logger.info("%d of %d micrographs have no coordinates and are skipped",
                    len(skipped), len(micrographs))
    out_dir = os.path.abspath(out_dir)  # ultralytics puts relative paths under its runs/
    os.makedirs(out_dir, exist_ok=True)
    # amp=False: ultralytics' AMP self-check downloads a model. nbs=batch:
    # update the weights after every batch, not after accumulating 64 images;
    # with a few micrographs, AdamW at a higher rate and a short warm-up then
    # learns in tens of epochs (measured on simulated micrographs).
    training = dict(epochs=epochs, patience=patience, batch=batch, nbs=batch,
                    amp=False, seed=seed, deterministic=False, optimizer="AdamW",
                    lr0=learning_rate, warmup_epochs=1, close_mosaic=max(1, epochs // 4),
                    pretrained=bool(initial_weights), **augmentation(augment))
    run = {"micrographs": sorted(map(micrograph_stem, labelled)), "box_size": box_size,
           "coordinates": _coordinates_fingerprint(labelled, class_names),
           "classes": class_names, "preprocessing": settings.to_dict(), "tile": tile,
           "val_fraction": val_fraction, "model": model,
           "initial_weights": os.path.abspath(initial_weights) if initial_weights else "",
           "training": training}
    run = json.loads(json.dumps(run))  # as read back from the dataset's run description
    data_yaml, tile, split_sizes = _training_dataset(
        labelled, class_names, box_size, settings, out_dir, val_fraction, tile, threads,
        seed, run, resume)
    finished = os.path.join(out_dir, MODEL_METADATA)
    if resume and os.path.isfile(finished):
        logger.info("resuming: the training in %s had finished; its model is kept", out_dir)
        with open(finished) as f:
            return json.load(f)
    logger.info("training %s on %d micrographs (%s), %d particles, classes %s, tiles "
                "of %d px", model, split_sizes["train"],
                "a strip of %d %% of each held out for validation" % round(100 * val_fraction)
                if split_sizes["val"] else "validating on the training tiles",
                sum(len(r) for r in labelled.values()), ",".join(class_names), tile)
    run_dir = os.path.join(out_dir, "training")
    _fit(out_dir, data_yaml, tile, model, initial_weights, training, gpu_ids, threads,
         resume)
    # The last epoch, not the best by validation fitness: on the few tens of
    # particles a few annotated micrographs hold out, the best epoch is noise
    # and often early (BENCHMARKS.md, "Validation strips").
    weights = os.path.join(run_dir, "weights", "last.pt")
    if not os.path.isfile(weights):
        raise RuntimeError("training ended without weights in %s" % weights)
    metrics_csv = os.path.join(out_dir, METRICS_CSV)
    _copy_atomic(os.path.join(run_dir, "results.csv"), metrics_csv)
    grid = settings.grid(read_micrograph(min(labelled)).shape, box_size)
    calibration = choose_thresholds(weights, os.path.join(out_dir, "dataset"),
                                    box_in_working(box_size, grid),
                                    gpu_ids) if split_sizes["val"] else {}
    metadata = {"kind": "picker", "classes": class_names, "box_size": box_size,
                "preprocessing": settings.to_dict(), "working_shape": list(grid.working_shape),
                "tile": tile, "model": model,
                "weights": "last", "final_metrics": final_metrics(metrics_csv),
                "micrographs_trained": len(labelled),
                "validation_fraction": val_fraction if split_sizes["val"] else 0,
                "micrographs_skipped": len(skipped), **calibration}
    _write_weights(weights, os.path.join(out_dir, MODEL_WEIGHTS))
    write_json(os.path.join(out_dir, MODEL_METADATA), metadata)
    return metadata


def train_picker_choosing_preprocessing(micrographs, coords_dir, box_size, out_dir,
                                        filters, resume=False, **training):
    """`train_picker` twice, with the paper's `filters` and with background
    flattening only, each in out_dir/PREPROCESSING_TRIALS/<name>; the picker
    whose validation strips give the higher view F1 (with the default
    test-time copies, at its chosen threshold) becomes out_dir's model, the
    filters on a tie, with both trials' figures in model.json
    (`preprocessing_choice`). Neither wins everywhere: the filters keep views
    apart on raw micrographs, flattening alone picks better on denoised ones
    (BENCHMARKS.md). Short trials do not tell them apart (after a quarter of
    40 epochs neither picked a particle of the simulated views), so both
    train fully. Without validation strips (validation fraction 0, or too
    few annotated particles in them) there is nothing to choose on: the
    filters' picker is kept, after one training. With `resume`, a finished
    trial is kept and an interrupted one continues. Returns the model's
    metadata."""
    candidates = {"filters": filters,
                  "flattening": PreprocessSettings.disabled(filters.working_size,
                                                               filters.working_box)}
    trials = {}
    for name, settings in candidates.items():
        logger.info("preprocessing trial '%s'", name)
        metadata = train_picker(micrographs, coords_dir, box_size,
                                os.path.join(out_dir, PREPROCESSING_TRIALS, name), settings,
                                resume=resume, **training)
        figures = metadata.get("threshold_validation", {}).get(str(Detection.tta))
        if not figures:
            logger.info("no validation strips to choose the preprocessing on (validation "
                        "fraction 0, or fewer than %d annotated particles in them): the "
                        "filters' picker is kept", VALIDATION_MIN_PARTICLES)
            return _keep_trial(out_dir, "filters", {})
        trials[name] = {"f1": figures["f1"], "view_f1": figures["view_f1"],
                        "threshold": metadata["thresholds"][str(Detection.tta)]}
    chosen = max(candidates, key=lambda name: trials[name]["view_f1"])  # first of equals
    logger.info("preprocessing chosen on the validation strips: '%s' (%s)", chosen,
                "; ".join("%s view F1 %.3f, F1 %.3f" % (name, t["view_f1"], t["f1"])
                          for name, t in trials.items()))
    return _keep_trial(out_dir, chosen, trials)


def _keep_trial(out_dir, chosen, trials):
    """The model of trial `chosen` as out_dir's, with the choice in model.json."""
    folder = os.path.join(out_dir, PREPROCESSING_TRIALS, chosen)
    with open(os.path.join(folder, MODEL_METADATA)) as f:
        metadata = json.load(f)
    metadata["preprocessing_choice"] = {"chosen": chosen, "trials": trials}
    _copy_atomic(os.path.join(folder, METRICS_CSV), os.path.join(out_dir, METRICS_CSV))
    _copy_atomic(os.path.join(folder, MODEL_WEIGHTS), os.path.join(out_dir, MODEL_WEIGHTS))
    write_json(os.path.join(out_dir, MODEL_METADATA), metadata)
    return metadata


def choose_thresholds(weights, dataset_dir, box_working, gpu_ids=()):
    """The confidence threshold chosen on the validation strips
    (`best_threshold`) for each number of test-time copies, as
    {"thresholds": {copies: threshold},
    "threshold_validation": {copies: precision, recall, F1 there, the
    particles, and the view F1: the F1 there when a pick of the wrong view
    class counts as false}}.

    A pick matches a particle within SAME_PARTICLE of a box. Each strip is
    scored within the extent of its labels and at least half a box from its
    edges (picking leaves out picks near the micrograph edge): annotators
    often leave a margin or a part of a micrograph unlabelled, where right
    picks would count as false. A pick of a particle outside that area
    counts neither way."""
    strips = read_strips(dataset_dir)
    margin = box_working / 2
    areas = [_scored_area(truth, image.shape, margin) for image, truth, _ in strips]
    particles = sum(np.count_nonzero(_within(truth, area))
                    for (_, truth, _), area in zip(strips, areas))
    network = import_yolo()(weights, task="detect")
    detect = functools.partial(_detect, network, iou=Detection.iou,
                               max_det=Detection.max_det, device=ultralytics_device(gpu_ids))
    radius = SAME_PARTICLE * box_working
    matched = {copies: ([], [], []) for copies in TTA_COPIES}
    for (image, truth, truth_classes), area in zip(strips, areas):
        found = _detect_copies(detect, image, THRESHOLD_CHOICES[0] / max(TTA_COPIES),
                               max(TTA_COPIES))
        for copies in TTA_COPIES:
            centres, scores, classes = (found[0] if copies == 1
                                        else fuse_copies(found[:copies], radius))
            hits, right_view, counted = _strip_matches(centres, scores, classes, truth,
                                                       truth_classes, area, radius)
            for kept, values in zip(matched[copies], (hits, right_view, scores)):
                kept.append(values[counted])
    thresholds, figures = {}, {}
    for copies, (hits, right_view, scores) in matched.items():
        hits, right_view, scores = (np.concatenate(a) for a in (hits, right_view, scores))
        threshold, figures[str(copies)] = best_threshold(hits, scores, particles)
        kept = scores >= threshold
        figures[str(copies)]["view_f1"] = PickingScore.from_matches(right_view[kept],
                                                                    particles).f1
        thresholds[str(copies)] = threshold
    chosen = figures[str(Detection.tta)]
    logger.info("picking threshold chosen on the validation strips (%d particles): %s "
                "with %d copies (precision %.3f, recall %.3f, F1 %.3f there); %s",
                particles, thresholds[str(Detection.tta)], Detection.tta,
                chosen["precision"], chosen["recall"], chosen["f1"],
                ", ".join("%s with %s" % (thresholds[c], c) for c in thresholds))
    return {"thresholds": thresholds, "threshold_validation": figures}


def _strip_matches(centres, scores, classes, truth, truth_classes, area, radius):
    """Which picks matched a particle, which of those gave its view class,
    and which count: a pick of a particle in the scored `area`, and a pick in
    it that matched none."""
    assigned = assign_picks(centres, truth, radius, scores)
    matched = assigned >= 0
    right_view = matched & (np.append(truth_classes, -1)[assigned] == classes)
    counted_particle = np.append(_within(truth, area), False)  # [-1]: none
    return (matched, right_view,
            np.where(matched, counted_particle[assigned], _within(centres, area)))


def best_threshold(matched, scores, particles):
    """(threshold, figures) of THRESHOLD_CHOICES for picks (`matched` to one
    of `particles` labels, with `scores`): of those whose F1 lies within one
    standard error of the best F1, the one nearest the default (then the
    higher F1). On the few hundred particles of the validation strips F1
    varies by about 0.02 from one sample to the next, and the best of the
    choices alone strayed to 0.4 where the test micrographs do best at 0.25
    to 0.3 (BENCHMARKS.md, "Validation strips and the stored threshold")."""
    figures = {t: PickingScore.from_matches(matched[scores >= t], particles)
               for t in THRESHOLD_CHOICES}
    best = max(score.f1 for score in figures.values())
    standard_error = np.sqrt(best * (1 - best) / max(particles, 1))
    threshold = min((t for t, score in figures.items() if score.f1 >= best - standard_error),
                    key=lambda t: (abs(t - Detection.threshold), -figures[t].f1))
    chosen = figures[threshold]
    return threshold, {"precision": chosen.precision, "recall": chosen.recall,
                       "f1": chosen.f1, "particles": particles}


def stored_threshold(metadata, copies):
    """The threshold a picker chose at training for `copies` test-time
    copies; the default for pickers without one."""
    return metadata.get("thresholds", {}).get(str(copies), Detection.threshold)


def _scored_area(truth, shape, margin):
    """(x0, y0, x1, y1): the extent of the labels `truth`, at least `margin`
    inside an image of `shape`."""
    rows, columns = shape
    x, y = np.asarray(truth, dtype=float).reshape(-1, 2).T
    if not len(x):
        return margin, margin, columns - margin, rows - margin
    return (max(margin, x.min()), max(margin, y.min()),
            min(columns - margin, x.max()), min(rows - margin, y.max()))


def _within(centres, area):
    x0, y0, x1, y1 = area
    x, y = np.asarray(centres, dtype=float).reshape(-1, 2).T
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _coordinates_fingerprint(labelled, class_names):
    rows = [(index, row["x"], row["y"], class_names.index(row.get("class") or DEFAULT_CLASS))
            for index, path in enumerate(sorted(labelled, key=micrograph_stem))
            for row in labelled[path]]
    return fingerprint(np.array(rows, dtype=float))


def _training_dataset(labelled, class_names, box_size, settings, out_dir, val_fraction,
                      tile, threads, seed, run, resume):
    """data.yaml, tile size and split sizes of the dataset in out_dir/dataset:
    the one an interrupted run completed when resuming it, else written now
    with its run description (dataset.json, written last)."""
    dataset_dir = os.path.join(out_dir, "dataset")
    description = os.path.join(dataset_dir, DATASET_DESCRIPTION)
    if resume and os.path.isfile(description):
        with open(description) as f:
            saved = json.load(f)
        check_same_run(saved["run"], run, dataset_dir)
        logger.info("resuming: the dataset in %s is complete and kept", dataset_dir)
        return os.path.join(dataset_dir, "data.yaml"), saved["tile"], saved["splits"]
    if resume and os.path.isdir(dataset_dir):
        logger.info("resuming: the dataset in %s is incomplete (the run stopped while "
                    "writing it); writing it again and training from the start", dataset_dir)
        for name in ("dataset", "training"):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    data_yaml, tile, splits = write_yolo_dataset(
        labelled, class_names, box_size, settings, dataset_dir, val_fraction, tile,
        threads, seed)
    write_json(description, {"run": run, "tile": tile, "splits": splits})
    return data_yaml, tile, splits


def _fit(out_dir, data_yaml, tile, model, initial_weights, training, gpu_ids, threads,
         resume):
    """Train in out_dir/training, or with `resume` continue the training saved
    there; ultralytics' own output stays off, one line per epoch is logged."""
    YOLO = import_yolo()
    run_dir = os.path.join(out_dir, "training")
    last = os.path.join(run_dir, "weights", "last.pt")
    saved = _saved_training(run_dir, training["epochs"]) if resume else None
    if saved == FINISHED:
        logger.info("resuming: the training in %s had finished", run_dir)
        return
    machine = dict(device=ultralytics_device(gpu_ids), workers=threads,
                   trainer=_atomic_checkpoint_trainer())
    if saved:
        logger.info("resuming from %s: %d of %d epochs done", last, saved,
                    training["epochs"])
        _drop_unsaved_epochs(os.path.join(run_dir, "results.csv"), saved)
        network = YOLO(last)
        _log_epochs(network, training["epochs"])
        # ultralytics takes the settings from last.pt; save_dir follows a moved folder
        network.train(resume=True, data=data_yaml, save_dir=run_dir, **machine)
        return
    network = YOLO(model + ".yaml")
    if initial_weights:
        network.load(initial_weights)
    _log_epochs(network, training["epochs"])
    network.train(data=data_yaml, imgsz=tile, project=out_dir, name="training",
                  exist_ok=True, plots=False, verbose=False, **training, **machine)


def _saved_training(run_dir, epochs):
    """The epochs that the training saved in `run_dir` completed, FINISHED
    when it has ended, or 0 when it has not saved an epoch or its weights
    cannot be read (killed while ultralytics rewrote them at the end)."""
    import torch
    last, best = (os.path.join(run_dir, "weights", name) for name in ("last.pt", "best.pt"))
    if not os.path.isfile(last):
        return 0
    try:
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if os.path.isfile(best):
            torch.load(best, map_location="cpu", weights_only=False)
    except Exception as error:
        logger.info("resuming: the weights in %s cannot be read (%s); training from the "
                    "start", run_dir, error)
        shutil.rmtree(run_dir)
        return 0
    done = saved.get("epoch", -1) + 1
    if saved.get("optimizer") is None or not 0 < done < epochs:
        return FINISHED
    return done


def _drop_unsaved_epochs(results_csv, done):
    """Remove the rows of epochs after the `done` ones whose weights were
    saved: a run stopped between writing an epoch's metrics and its weights
    trains that epoch again."""
    if not os.path.isfile(results_csv):
        return
    with open(results_csv) as f:
        header, *rows = f.readlines()
    kept = [row for row in rows if int(float(row.split(",")[0])) <= done]
    if len(kept) < len(rows):
        with replacing(results_csv) as partial, open(partial, "w") as f:
            f.writelines([header] + kept)


def _log_epochs(network, epochs):
    """One log line per epoch: training losses, validation precision, recall
    and mAP50, seconds and time left."""
    progress = EpochLog(epochs)
    current = {}

    def epoch_started(trainer):
        current["epoch"] = trainer.epoch
        progress.start()

    def epoch_ended(trainer):
        if trainer.epoch != current.get("epoch"):
            return  # ultralytics' last validation of the best weights, not an epoch
        figures = {name.split("/")[-1]: value
                   for name, value in trainer.label_loss_items(trainer.tloss).items()}
        figures.update((name, trainer.metrics[METRIC_COLUMNS[name]])
                       for name in ("precision", "recall", "mAP50"))
        progress.done(trainer.epoch + 1, figures)

    network.add_callback("on_train_epoch_start", epoch_started)
    network.add_callback("on_fit_epoch_end", epoch_ended)


def _atomic_checkpoint_trainer():
    """ultralytics' detection trainer writing last.pt and best.pt under a
    temporary name first, so that a run killed while saving them keeps the
    previous epoch's weights to resume from."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class AtomicCheckpointTrainer(DetectionTrainer):
        def save_model(self):
            final = self.last, self.best
            self.last, self.best = partial = tuple(p.with_name(p.name + ".partial")
                                                   for p in final)
            try:
                for path in partial:
                    path.unlink(missing_ok=True)
                saved = super().save_model()
            finally:
                self.last, self.best = final
            # best.pt first: stopped between the two, the run resumes from the
            # epoch before and trains this one again
            for temporary, path in reversed(list(zip(partial, final))):
                if temporary.exists():
                    os.replace(temporary, path)
            return saved

    return AtomicCheckpointTrainer


def final_metrics(metrics_csv):
    """Precision, recall and mAP of the last epoch."""
    import csv
    with open(metrics_csv, newline="") as f:
        row = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)][-1]
    return {key: float(row[column]) for key, column in METRIC_COLUMNS.items()} | {
        "epoch": int(float(row["epoch"]))}


def _copy_atomic(source, target):
    with replacing(target) as partial:
        shutil.copyfile(source, partial)


def _write_weights(weights, target):
    """The trained weights without the optimiser state (a training that had
    finished already stripped it; one stopped at the end may not have)."""
    from ultralytics.utils.torch_utils import strip_optimizer
    with replacing(target) as partial:
        if not strip_optimizer(weights, s=partial):
            raise RuntimeError("%s cannot be read" % weights)


def load_network(model_path):
    """A trained picker: (ultralytics model, metadata)."""
    metadata = read_model_metadata(model_path, "picker")
    YOLO = import_yolo()
    try:
        return YOLO(model_path, task="detect"), metadata
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else error
        raise InputError("%s: cannot read the picker's weights (%s); the file may be "
                         "truncated: train again or copy it again" % (model_path, reason)) \
            from error


def pick(model_path, micrographs, threshold=None, iou=Detection.iou,
         max_det=Detection.max_det, border=None, gpu_ids=(), threads=1, chunk=8,
         tta=Detection.tta):
    """Detect particles; yields (micrograph path, picks) in input order, picks
    being dicts x, y (micrograph pixels), score, class, best first. Boxes are
    suppressed across classes: a particle gets one pick, of its likeliest
    view, not one per view.

    `tta` > 1: test-time augmentation; the micrograph is also picked turned
    by quarter turns and mirrored (`dihedral_copies`), and each particle gets
    the mean of its scores over the copies (`fuse_copies`).

    Picks score at least `threshold`, by default the one the picker chose at
    training for `tta` copies (`stored_threshold`). Picks closer than
    `border` px to the micrograph edge are dropped (default half the model's
    box: such boxes cannot be extracted whole)."""
    network, metadata = load_network(model_path)
    if threshold is None:
        threshold = stored_threshold(metadata, tta)
        logger.info("confidence threshold %s, %s", threshold,
                    "chosen at training for %d copies" % tta if "thresholds" in metadata
                    else "the default (the picker chose none at training)")
    settings = PreprocessSettings.from_dict(metadata["preprocessing"])
    border = metadata["box_size"] / 2 if border is None else border
    timing = {"preprocessing": 0.0, "inference": 0.0}
    detect = functools.partial(_detect, network, iou=iou, max_det=max_det,
                               device=ultralytics_device(gpu_ids))
    for start in range(0, len(micrographs), chunk):
        paths = micrographs[start:start + chunk]
        began = time.perf_counter()
        processed = preprocess_micrograph_files(paths, settings, threads,
                                                metadata["box_size"])
        timing["preprocessing"] += time.perf_counter() - began
        began = time.perf_counter()
        for path, (image, grid) in zip(paths, processed):
            if tta == 1:
                centres, scores, classes = detect(image, threshold)
            else:
                radius = SAME_PARTICLE * box_in_working(metadata["box_size"], grid)
                centres, scores, classes = _detect_in_copies(detect, image, threshold, tta,
                                                             radius)
            picks = _picks(centres, scores, classes, grid, metadata["classes"])
            yield path, away_from_edges(picks, grid.original_shape, border)
        timing["inference"] += time.perf_counter() - began
    logger.info("%d micrographs: preprocessing %.2f s, inference %.2f s (%.2f and %.2f s "
                "per micrograph)", len(micrographs), timing["preprocessing"],
                timing["inference"], timing["preprocessing"] / max(1, len(micrographs)),
                timing["inference"] / max(1, len(micrographs)))


def _detect(network, image, confidence, iou, max_det, device):
    """Box centres (n, 2) in the continuous coordinates of `image`, scores
    and class indices of the detections of one working image."""
    result = network.predict(np.repeat(image[..., None], 3, axis=2),
                             imgsz=_network_size(image.shape), conf=confidence, iou=iou,
                             agnostic_nms=True, max_det=max_det, device=device,
                             verbose=False)[0]
    boxes = result.boxes
    if boxes is None or not len(boxes):
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=int)
    return (boxes.xywh.cpu().numpy()[:, :2].astype(float), boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(int))


def _detect_in_copies(detect, image, threshold, copies, radius):
    """Detections fused over `copies` dihedral copies of `image`. Each copy
    is searched down to threshold / copies: a weaker detection cannot lift a
    particle's mean over the threshold on its own."""
    centres, scores, classes = fuse_copies(
        _detect_copies(detect, image, threshold / copies, copies), radius)
    keep = scores >= threshold
    return centres[keep], scores[keep], classes[keep]


def _detect_copies(detect, image, confidence, copies):
    """The detections in each of `copies` dihedral copies of `image`, in the
    frame of `image`."""
    found = []
    for turns, mirror in dihedral_copies(copies):
        centres, scores, classes = detect(dihedral_copy(image, turns, mirror), confidence)
        found.append((from_copy(centres, image.shape, turns, mirror), scores, classes))
    return found


def from_copy(centres, shape, turns, mirror):
    """Continuous coordinates (n, 2) of points of `dihedral_copy(image, turns,
    mirror)` in the image itself, of `shape` (rows, columns)."""
    x, y = np.asarray(centres, dtype=float).reshape(-1, 2).T
    rows, columns = (shape[1], shape[0]) if turns % 2 else shape
    if mirror:
        x = columns - x
    for _ in range(turns):  # undo np.rot90's counter-clockwise quarter turns, last first
        x, y = rows - y, x
        rows, columns = columns, rows
    return np.column_stack([x, y])


def fuse_copies(found, radius):
    """One detection per particle from the detections in several copies of
    a micrograph (list of (centres, scores, classes) in the micrograph's
    frame). Detections within `radius` of the best one left are the same
    particle: its score is the mean over the copies of its best score there
    (0 where a copy missed it), its centre their score-weighted mean, its
    class the one with the largest summed score."""
    from scipy.spatial import cKDTree
    centres = np.concatenate([f[0] for f in found]).reshape(-1, 2)
    scores = np.concatenate([f[1] for f in found])
    classes = np.concatenate([f[2] for f in found]).astype(int)
    copy = np.repeat(np.arange(len(found)), [len(f[1]) for f in found])
    fused = ([], [], [])
    taken = np.zeros(len(scores), dtype=bool)
    tree = cKDTree(centres) if len(scores) else None
    for seed in np.argsort(-scores):
        if taken[seed]:
            continue
        near = np.array(tree.query_ball_point(centres[seed], radius))
        near = near[~taken[near]]
        taken[near] = True
        near = near[np.argsort(-scores[near], kind="stable")]
        best = near[np.unique(copy[near], return_index=True)[1]]  # best of each copy
        weights = scores[best]
        fused[0].append(weights @ centres[best] / weights.sum())
        fused[1].append(weights.sum() / len(found))
        fused[2].append(np.argmax(np.bincount(classes[best], weights=weights)))
    return (np.array(fused[0]).reshape(-1, 2), np.array(fused[1]),
            np.array(fused[2], dtype=int))


def _network_size(shape):
    """Prediction size that keeps the working scale: the long side rounded up
    to the network stride (32), so ultralytics pads rather than resizes."""
    return int(np.ceil(max(shape) / 32)) * 32


def away_from_edges(picks, shape, border):
    """The picks whose centre lies at least `border` px inside the micrograph."""
    rows, columns = shape
    return [p for p in picks if border <= p["x"] <= columns - 1 - border
            and border <= p["y"] <= rows - 1 - border]


def _picks(centres, scores, classes, grid, class_names):
    x, y = centres_to_micrograph(centres, grid)
    return [{"x": float(x[i]), "y": float(y[i]), "score": float(scores[i]),
             "class": class_names[classes[i]]} for i in np.argsort(-scores)]
