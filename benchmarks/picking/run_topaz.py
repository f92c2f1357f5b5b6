"""Row (c) of the picking benchmark: Topaz on the beta-galactosidase micrographs.

Topaz (topaz-em, its own virtual environment, see requirements-topaz.txt) is
run with the settings of its tutorial: `topaz preprocess -s 8` (the 108 px
particle becomes ~13.5 px), `topaz train` with the expected number of
particles per micrograph taken from the training labels and the default
positive radius of 3 px, `topaz extract` with the particle radius in
downsampled pixels and the coordinates scaled back by 8. The score threshold
is the one that maximises F1 at 27 px on the 4 training micrographs; the 16
test micrographs are extracted once with Topaz's own lowest default (-6) so
that average precision sees every pick, and scored at that threshold.

Topaz reads the 8-bit JPEGs poorly, so they are first written as float32 MRC
(timed apart: this step is an artefact of the benchmark, not of Topaz).

    benchmarks/make_envs.sh topaz     # once: Topaz in benchmarks/envs/topaz
    nice -n 10 .venv/bin/python benchmarks/picking/run_topaz.py \\
        --out benchmarks/picking/results_topaz.json
"""
import argparse
import csv
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402
from locations import peer_program  # noqa: E402

from cryoprune_scipion.engine.io import read_micrograph, write_micrograph, write_table  # noqa: E402

SCALE = 8
EXTRACT_THRESHOLD = -6.0  # topaz extract's default, log-likelihood ratio


def child_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(command):
    """Run a command; return (wall seconds, CPU seconds of the child)."""
    print("+", " ".join(command), flush=True)
    cpu, wall = child_cpu_seconds(), time.time()
    subprocess.run(command, check=True)
    return time.time() - wall, child_cpu_seconds() - cpu


def to_mrc(paths, folder):
    os.makedirs(folder, exist_ok=True)
    start = time.process_time()
    for path in paths:
        write_micrograph(os.path.join(folder, evaluate.stem(path) + ".mrc"),
                         read_micrograph(path))
    return time.process_time() - start


def write_targets(stems, path):
    """Topaz's training table: image_name, x_coord, y_coord in downsampled pixels."""
    rows = []
    for name in stems:
        for x, y in evaluate.read_labels(name):
            rows.append({"image_name": name, "x_coord": int(round(x / SCALE)),
                         "y_coord": int(round(y / SCALE))})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image_name", "x_coord", "y_coord"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def split_extracted(table, folder):
    """Topaz's one table of picks -> one `<stem>.csv` (x,y,score) per micrograph."""
    os.makedirs(folder, exist_ok=True)
    picks = {}
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            picks.setdefault(row["image_name"], []).append(
                {"x": row["x_coord"], "y": row["y_coord"], "score": row["score"]})
    for name, rows in picks.items():
        write_table(os.path.join(folder, name + ".csv"), ["x", "y", "score"], rows)


def extract(topaz, model, micrographs, radius, table, threads):
    return run_timed([topaz, "extract", "-m", model, "-r", str(radius),
                      "-t", str(EXTRACT_THRESHOLD), "-x", str(SCALE), "-d", "-1",
                      "-j", str(threads), "-o", table] + micrographs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topaz", default=peer_program("topaz", "topaz"),
                        help="the topaz program (default: the environment made by "
                             "benchmarks/make_envs.sh, under $CRYOPRUNE_BENCH_ENVS)")
    parser.add_argument("--work", default="benchmarks/work/picking/topaz")
    parser.add_argument("--out", default="benchmarks/picking/results_topaz.json")
    parser.add_argument("--epochs", type=int, default=10, help="topaz train --num-epochs")
    parser.add_argument("--epoch-size", type=int, default=1000,
                        help="topaz train --epoch-size (parameter updates per epoch)")
    parser.add_argument("--train-radius", type=int, default=3, help="topaz train -r")
    parser.add_argument("--extract-radius", type=int, default=7,
                        help="topaz extract -r: particle radius in downsampled pixels")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    train, test = evaluate.split()
    work = args.work
    mrc_dir, small_dir = os.path.join(work, "mrc"), os.path.join(work, "preprocessed")
    conversion_cpu = to_mrc(train + test, mrc_dir)

    timings = {}
    for part, paths in (("train", train), ("test", test)):
        mrcs = [os.path.join(mrc_dir, evaluate.stem(p) + ".mrc") for p in paths]
        timings[part] = {"preprocess": run_timed(
            [args.topaz, "preprocess", "-s", str(SCALE), "-d", "-1",
             "-j", str(args.threads), "-o", small_dir] + mrcs)}

    train_stems = [evaluate.stem(p) for p in train]
    targets = os.path.join(work, "train_targets.txt")
    n_labels = write_targets(train_stems, targets)
    images = os.path.join(work, "train_images.txt")
    with open(images, "w") as handle:
        handle.write("image_name\tpath\n")
        for name in train_stems:
            path = os.path.abspath(os.path.join(small_dir, name + ".mrc"))
            handle.write("%s\t%s\n" % (name, path))
    particles_per_micrograph = int(round(n_labels / len(train)))
    model_prefix = os.path.join(work, "model")
    train_wall, train_cpu = run_timed(
        [args.topaz, "train", "-d", "-1", "-j", str(args.threads),
         "--train-images", images, "--train-targets", targets,
         "-n", str(particles_per_micrograph), "-r", str(args.train_radius),
         "--num-epochs", str(args.epochs), "--epoch-size", str(args.epoch_size),
         "--save-prefix", model_prefix, "-o", os.path.join(work, "training.txt")])
    model = "%s_epoch%d.sav" % (model_prefix, args.epochs)

    for part, paths in (("train", train), ("test", test)):
        table = os.path.join(work, "picks_%s.txt" % part)
        smalls = [os.path.join(small_dir, evaluate.stem(p) + ".mrc") for p in paths]
        timings[part]["extract"] = extract(args.topaz, model, smalls, args.extract_radius,
                                           table, args.threads)
        split_extracted(table, os.path.join(work, "picks"))

    threshold, train_figures = evaluate.best_threshold(os.path.join(work, "picks"), train_stems)
    result = evaluate.evaluate(os.path.join(work, "picks"),
                               [evaluate.stem(p) for p in test], threshold)
    n_test = len(test)
    result.update({
        "row": "Topaz",
        "threshold_choice": "max F1 at 27 px on the 4 training micrographs",
        "train_figures_at_27px": train_figures,
        "cpu_seconds_per_micrograph": {
            "preprocessing": round(timings["test"]["preprocess"][1] / n_test, 2),
            "inference": round(timings["test"]["extract"][1] / n_test, 2),
            "jpeg_to_mrc_conversion": round(conversion_cpu / (len(train) + n_test), 2)},
        "training": {"wall_seconds": round(train_wall), "cpu_seconds": round(train_cpu),
                     "micrographs": len(train), "labels": n_labels},
        "settings": {"topaz_version": subprocess.run([args.topaz, "--version"], capture_output=True,
                                                     text=True).stdout.strip(),
                     "preprocess": "-s %d (GMM normalisation)" % SCALE,
                     "train": {"num_particles": particles_per_micrograph,
                               "radius": args.train_radius, "num_epochs": args.epochs,
                               "epoch_size": args.epoch_size, "model": "resnet8 u32 (default, "
                               "pretrained init shipped with topaz)", "method": "GE-binomial"},
                     "extract": {"radius": args.extract_radius, "up_scale": SCALE,
                                 "threshold": EXTRACT_THRESHOLD},
                     "threads": args.threads},
    })
    evaluate.save_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
