"""Class averages of real beta-galactosidase particles (EMPIAR-10017, the
20 labelled micrographs, see benchmarks/locations.py): windows of 160 px around the
expert centres of the 16 test micrographs, downsampled to 64 px, classified
by `cryoprune classify2d`, shown as a gallery PNG.

    nice -n 10 python benchmarks/classification/bench_betagal.py \
        --micrographs 4 --classes 20 --epochs 15 \
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


def gallery(averages, sizes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = 5
    rows = int(np.ceil(len(averages) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows))
    for k, axis in enumerate(np.ravel(axes)):
        axis.axis("off")
        if k < len(averages):
            axis.imshow(averages[k], cmap="gray")
            axis.set_title("class %d (%d)" % (k + 1, sizes[k]), fontsize=9)
    figure.suptitle("beta-galactosidase (EMPIAR-10017), contrastive 2D classes")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micrographs", type=int, default=4)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    particles, names = extract(args.micrographs)
    with tempfile.TemporaryDirectory() as folder:
        stack = os.path.join(folder, "betagal.mrcs")
        write_stack(stack, particles, 1.77 * BOX / SIZE)
        start = time.time()
        code = cryoprune(["classify2d", "--particles", stack, "--classes", str(args.classes),
                          "--out", folder, "--epochs", str(args.epochs), "--threads", "1"])
        seconds = time.time() - start
        if code:
            sys.exit(code)
        import mrcfile
        with mrcfile.open(os.path.join(folder, "averages.mrcs")) as mrc:
            averages = np.array(mrc.data)
        with open(os.path.join(folder, "classes.csv")) as f:
            labels = np.array([int(r["class"]) for r in csv.DictReader(f)])
    sizes = np.bincount(labels, minlength=args.classes + 1)[1:]
    os.makedirs(args.out, exist_ok=True)
    gallery(averages, sizes, os.path.join(args.out, "betagal_gallery.png"))
    with open(os.path.join(args.out, "betagal.json"), "w") as f:
        json.dump({"micrographs": names, "particles": int(len(particles)), "box": BOX,
                   "working_size": SIZE, "classes": args.classes, "epochs": args.epochs,
                   "class_sizes": sizes.tolist(), "seconds": seconds}, f, indent=2)


if __name__ == "__main__":
    main()
