"""Reading and writing micrographs, particle stacks and coordinate tables.

Coordinates follow the image as read: x is the column, y the row, origin at
the top-left pixel, values in pixels of the file's own grid.
"""
import contextlib
import csv
import json
import os

import numpy as np

from ..constants import MODEL_METADATA

MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".map")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class InputError(ValueError):
    """Bad input: the message names the file or parameter and what to do."""


def read_micrograph(path):
    """A micrograph as a 2D float32 array (rows, columns).

    MRC of any numeric mode and 8-bit JPEG, PNG or TIFF are accepted; a
    single-frame MRC stack counts as a micrograph.
    """
    image = _read_image_file(path)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] in (3, 4):  # RGB(A) picture
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2:
        raise InputError("%s: expected a 2D micrograph, found shape %s; give one "
                         "micrograph per file (sum movies first)" % (path, image.shape))
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        raise InputError("%s: the micrograph holds NaN or infinite values; "
                         "re-run motion correction or drop this micrograph" % path)
    return image


def _read_image_file(path):
    if not os.path.isfile(path):
        raise InputError("%s: micrograph file not found; check the path" % path)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix in MRC_SUFFIXES:
            import mrcfile
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise ValueError("no data block")
                return np.array(mrc.data)
        if suffix in IMAGE_SUFFIXES:
            from PIL import Image
            with Image.open(path) as picture:
                return np.asarray(picture)
    except Exception as error:
        raise InputError("%s: cannot read the image (%s); the file may be corrupt "
                         "or truncated, replace it or remove it from the input"
                         % (path, error)) from error
    raise InputError("%s: unknown image format '%s'; use MRC, JPEG, PNG or TIFF"
                     % (path, suffix))


def read_stack(path, mmap=True):
    """A particle stack (n, box, box) from an MRC file, memory-mapped so that
    large stacks are read batch-wise."""
    import mrcfile
    if not os.path.isfile(path):
        raise InputError("%s: particle stack not found; check the path" % path)
    try:
        opener = mrcfile.mmap if mmap else mrcfile.open
        with opener(path, mode="r", permissive=True) as mrc:
            data = mrc.data
            if data is None:
                raise ValueError("no data block")
            if data.ndim == 2:
                data = data[np.newaxis]
            return data if mmap else np.array(data)
    except Exception as error:
        raise InputError("%s: cannot read the particle stack (%s); the file may be "
                         "corrupt or truncated" % (path, error)) from error


@contextlib.contextmanager
def replacing(path):
    """Write a file under a temporary name that is moved to `path` when the
    block completes, and removed when it fails or is interrupted: the file
    appears only when complete."""
    partial = path + ".partial"
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.lexists(partial):
            os.remove(partial)


def write_stack(path, images, sampling_rate=None):
    """Write (n, box, box) float32 images as an MRC stack, all at once or not
    at all."""
    import mrcfile
    images = np.asarray(images, dtype=np.float32)
    with replacing(path) as partial, mrcfile.new(partial, overwrite=True) as mrc:
        mrc.set_data(images)
        if images.ndim == 3:
            mrc.header.ispg = 0
        if sampling_rate:
            mrc.voxel_size = sampling_rate


def write_micrograph(path, image, sampling_rate=None):
    """Write one 2D micrograph as MRC (float32)."""
    write_stack(path, np.asarray(image, dtype=np.float32), sampling_rate)


def read_coordinates(path):
    """Rows of a coordinate CSV with a header (`x,y[,score][,class]...`), as a
    list of dicts with x and y as finite floats; a header alone is no rows."""
    # utf-8-sig: spreadsheets save CSV with a byte-order mark before the header
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            if reader.fieldnames is None:
                raise InputError("%s is empty; a coordinate file starts with the header "
                                 "line x,y (a header alone lists no particles)" % path)
            if not {"x", "y"} <= set(reader.fieldnames):
                raise InputError("%s: a coordinate file needs a header with columns x and "
                                 "y (and optionally class), found %s"
                                 % (path, ",".join(reader.fieldnames)))
            return [_coordinate_row(path, reader.line_num, row) for row in reader]
        except (UnicodeDecodeError, csv.Error) as error:
            raise InputError("%s, line %d: not a CSV text table (%s)"
                             % (path, reader.line_num, error)) from error


def _coordinate_row(path, line, row):
    try:
        x, y = float(row["x"]), float(row["y"])
    except (TypeError, ValueError):
        x = y = float("nan")
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError("%s, line %d: x and y must be finite numbers, found %s, %s"
                         % (path, line, row.get("x"), row.get("y")))
    row["x"], row["y"] = x, y
    return row


def write_table(path, fieldnames, rows):
    """Write a CSV completely or not at all."""
    with replacing(path) as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json(path, data):
    """Write JSON completely or not at all."""
    with replacing(path) as partial, open(partial, "w") as f:
        json.dump(data, f, indent=2)


# The commands that write and read each kind of model
MODEL_MAKERS = {"picker": "train-picker", "pruner": "train-pruner",
                "encoder": "classify2d"}
MODEL_USERS = {"picker": "pick", "pruner": "prune and train-pruner --initial-weights",
               "encoder": "classify2d --initial-encoder"}


def read_model_metadata(weights, kind):
    """The `model.json` beside a model's weights file, checked to describe
    a model of `kind` (picker, pruner or encoder)."""
    if not os.path.isfile(weights):
        raise InputError("model file %s not found; check the path, or train a %s with "
                         "`cryoprune %s`" % (weights, kind, MODEL_MAKERS[kind]))
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), MODEL_METADATA)
    try:
        with open(path) as f:
            metadata = json.load(f)
        found = metadata.get("kind") or _legacy_model_kind(metadata)
    except (OSError, ValueError, AttributeError) as error:
        raise InputError("%s: no readable %s beside it (%s); give a model written by "
                         "`cryoprune %s`" % (weights, MODEL_METADATA, error,
                                             MODEL_MAKERS[kind])) from error
    if found != kind:
        raise InputError("%s is a %s model (written by `cryoprune %s`, for %s), not a %s; "
                         "give a model written by `cryoprune %s`"
                         % (weights, found, MODEL_MAKERS.get(found, "?"),
                            MODEL_USERS.get(found, "?"), kind, MODEL_MAKERS[kind]))
    return metadata


def _legacy_model_kind(metadata):
    """The kind of a model written before model.json named it (0.1.0)."""
    for key, kind in (("preprocessing", "picker"), ("backbone", "pruner"),
                      ("architecture", "encoder")):
        if key in metadata:
            return kind
    return "unknown"


def micrograph_stem(path):
    """The name a micrograph's coordinate file takes: its base name without
    the suffix."""
    return os.path.splitext(os.path.basename(path))[0]
