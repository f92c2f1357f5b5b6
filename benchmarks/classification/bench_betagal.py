"""Class averages of real beta-galactosidase particles (EMPIAR-10017, the
20 labelled micrographs, see benchmarks/locations.py): windows of 160 px around the
expert centres of the 16 test micrographs, downsampled to 64 px, classified
by `cryoprune classify2d` (contrastive start, then --refine-passes passes of
multi-reference alignment), shown as a gallery PNG of the classes ranked by
half-set resolution, with their sizes and scores (engine/plots.py, as the
class gallery viewer draws it).

    nice -n 10 python benchmarks/classification/bench_betagal.py \
        --micrographs 4 --classes 20 --epochs 12 \
        --out benchmarks/classification/results
"""
import argparse
import csv
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

from cryoprune_scipion.cli import main as cryoprune
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from locations import BETAGAL_DIR  # noqa: E402
from cryoprune_scipion.engine.io import read_micrograph, write_stack
from cryoprune_scipion.engine.plots import ClassAverage, draw_class_gallery
from cryoprune_scipion.engine.ranking import SCORES_FILE, read_scores
from cryoprune_scipion.engine.refine import RefinementSettings
from cryoprune_scipion.engine.windows import downsample_windows, extract_windows

DATA = BETAGAL_DIR
BOX, SIZE = 160, 64   # 1.77 A/px windows, 4.4 A/px after downsampling


def extract(n_micrographs):
    names = sorted(glob.glob(os.path.join(DATA, "micrographs", "*.jpg")))[4:4 + n_micrographs]
    stacks = []
    for path in names:
        stem = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(DATA, "coordinates", stem + ".csv")) as f:
            centres = np.array([(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)])
        windows, inside = extract_windows(read_micrograph(path), centres, BOX)
        stacks.append(downsample_windows(windows[inside], SIZE))
    return np.concatenate(stacks), [os.path.basename(n) for n in names]


def read_classes(folder, labels):
    """A plots.ClassAverage per class: average, size and scores."""
    import mrcfile
    with mrcfile.open(os.path.join(folder, "averages.mrcs")) as mrc:
        averages = np.array(mrc.data)
    scores = read_scores(os.path.join(folder, SCORES_FILE))
    sizes = np.bincount(labels, minlength=len(averages) + 1)[1:]
    return [ClassAverage(k, int(sizes[k - 1]), averages[k - 1], scores[k]["resolution"],
                         scores[k]["mean_correlation"]) for k in range(1, len(averages) + 1)]


def gallery(classes, path):
    from matplotlib.figure import Figure
    figure = Figure(figsize=(10, 11))
    draw_class_gallery(figure, classes, order="resolution", columns=5)
    figure.suptitle("beta-galactosidase (EMPIAR-10017): %d refined contrastive 2D classes "
                    "by half-set resolution (A at FRC 0.5), mean alignment correlation cc"
                    % len(classes), fontsize=9)
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micrographs", type=int, default=4)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--passes", type=int, default=RefinementSettings.passes,
                        help="refinement passes after the contrastive start")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    particles, names = extract(args.micrographs)
    sampling_rate = 1.77 * BOX / SIZE
    with tempfile.TemporaryDirectory() as folder:
        stack = os.path.join(folder, "betagal.mrcs")
        write_stack(stack, particles, sampling_rate)
        start = time.time()
        code = cryoprune(["classify2d", "--particles", stack, "--classes", str(args.classes),
                          "--out", folder, "--epochs", str(args.epochs), "--threads", "1",
                          "--refine-passes", str(args.passes), "--class-order", "resolution"])
        seconds = time.time() - start
        if code:
            sys.exit(code)
        with open(os.path.join(folder, "classes.csv")) as f:
            labels = np.array([int(r["class"]) for r in csv.DictReader(f)])
        classes = read_classes(folder, labels)
    os.makedirs(args.out, exist_ok=True)
    gallery(classes, os.path.join(args.out, "betagal_gallery.png"))
    with open(os.path.join(args.out, "betagal.json"), "w") as f:
        json.dump({"micrographs": names, "particles": int(len(particles)), "box": BOX,
                   "working_size": SIZE, "classes": args.classes, "epochs": args.epochs,
                   "refine_passes": args.passes, "seconds": seconds,
                   "class_sizes": [c.size for c in classes],
                   "resolution_A": [c.resolution for c in classes],
                   "mean_correlation": [c.mean_correlation for c in classes]}, f, indent=2)


if __name__ == "__main__":
    main()
