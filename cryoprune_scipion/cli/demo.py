"""`cryoprune demo`: the whole picking job on simulated micrographs whose
answer is known: train on some, pick the others, score and draw the picks."""
import logging
import os

import numpy as np

from ..constants import MODEL_WEIGHTS
from ..engine.device import add_device_argument
from ..engine.io import micrograph_stem, write_micrograph, write_table
from .arguments import at_least, positive_float, positive_int
from .outputs import RunOutputs, add_output_arguments

logger = logging.getLogger(__name__)

PIXEL_SIZE = 3.0  # Angstrom
BOX_SIZE = 64     # pixels, about 1.3 particle diameters
PICK_THRESHOLD = 0.1


def add_commands(commands):
    demo = commands.add_parser(
        "demo", help="simulate micrographs, train a picker on some, pick the rest")
    demo.add_argument("--out", required=True, metavar="DIR")
    demo.add_argument("--micrographs", type=at_least(3), default=8,
                      help="simulated micrographs, the last two are picked (default 8)")
    demo.add_argument("--epochs", type=positive_int, default=30)
    demo.add_argument("--snr", type=positive_float, default=1.0)
    demo.add_argument("--threads", type=positive_int, default=2)
    add_device_argument(demo)
    add_output_arguments(demo)
    demo.set_defaults(run=run_demo)


def simulate_dataset(out_dir, count, snr):
    """Micrographs as MRC and their true particle centres as CSV (x, y, view)."""
    from ..engine.simulate import simulate_micrograph
    mic_dir, truth_dir = os.path.join(out_dir, "micrographs"), os.path.join(out_dir, "truth")
    os.makedirs(mic_dir, exist_ok=True)
    os.makedirs(truth_dir, exist_ok=True)
    paths = []
    for index in range(count):
        simulated = simulate_micrograph((1024, 1024), n_particles=40, pixel_size=PIXEL_SIZE,
                                        snr=snr, junk=("ice",), seed=index)
        path = os.path.join(mic_dir, "mic%02d.mrc" % index)
        write_micrograph(path, simulated.image, PIXEL_SIZE)
        write_table(os.path.join(truth_dir, micrograph_stem(path) + ".csv"),
                    ["x", "y", "class"],
                    [{"x": p["x"], "y": p["y"], "class": p["view"]}
                     for p in simulated.particles])
        paths.append(path)
    return paths, truth_dir


def demo_results(count):
    """What the demo writes in its folder."""
    return (["micrographs", "truth", "model", "picks"]
            + ["mic%02d_picks.png" % index for index in (count - 2, count - 1)])


def run_demo(args):
    from ..engine.io import read_coordinates, read_micrograph
    from ..engine.metrics import score_picks
    from ..engine.picking import PICK_FIELDS, pick, train_picker
    from ..engine.preprocess import PreprocessSettings
    RunOutputs(args).folder(args.out, results=demo_results(args.micrographs))
    paths, truth_dir = simulate_dataset(args.out, args.micrographs, args.snr)
    training, held_out = paths[:-2], paths[-2:]
    gpu_ids = args.gpu_ids
    model_dir = os.path.join(args.out, "model")
    logger.info("training on %d simulated micrographs", len(training))
    train_picker(training, truth_dir, BOX_SIZE, model_dir,
                 settings=PreprocessSettings(working_size=512), epochs=args.epochs,
                 patience=args.epochs, gpu_ids=gpu_ids, threads=args.threads)
    picks_dir = os.path.join(args.out, "picks")
    os.makedirs(picks_dir, exist_ok=True)
    for path, picks in pick(os.path.join(model_dir, MODEL_WEIGHTS), held_out,
                            threshold=PICK_THRESHOLD, gpu_ids=gpu_ids, threads=args.threads):
        stem = micrograph_stem(path)
        write_table(os.path.join(picks_dir, stem + ".csv"), PICK_FIELDS, picks)
        truth = read_coordinates(os.path.join(truth_dir, stem + ".csv"))
        score = score_picks(np.array([(p["x"], p["y"]) for p in picks]).reshape(-1, 2),
                            [(t["x"], t["y"]) for t in truth], BOX_SIZE / 4,
                            [p["score"] for p in picks])
        picture = os.path.join(args.out, stem + "_picks.png")
        save_picks_picture(read_micrograph(path), picks, picture,
                           "%s: %d picks, %d true particles; precision %.2f, recall %.2f"
                           % (stem, len(picks), len(truth), score.precision, score.recall))
        print("%s: %d picks, %d true particles; precision %.2f, recall %.2f, F1 %.2f "
              "(within %d px); view class right for %.0f%% of the found particles; "
              "picture %s" % (stem, len(picks), len(truth), score.precision, score.recall,
                              score.f1, BOX_SIZE // 4, 100 * view_agreement(picks, truth),
                              picture), flush=True)


def save_picks_picture(micrograph, picks, path, title):
    """A PNG of the micrograph with its picks, coloured by view class;
    returns the figure."""
    from matplotlib.figure import Figure
    from ..engine.simulate import VIEWS
    from ..engine.plots import Picks, picks_figure
    figure = Figure(figsize=(8, 8.5))
    picks_figure(figure, micrograph, Picks.from_rows(picks), BOX_SIZE, PICK_THRESHOLD,
                 title, list(VIEWS))
    figure.savefig(path, dpi=100)
    return figure


def view_agreement(picks, truth):
    """Fraction of picks near a true particle (within a quarter box) whose
    view class is that particle's."""
    truth_xy = np.array([(t["x"], t["y"]) for t in truth])
    agree = found = 0
    for pick in picks:
        distance = np.hypot(*(truth_xy - (pick["x"], pick["y"])).T)
        nearest = int(np.argmin(distance))
        if distance[nearest] < BOX_SIZE / 4:
            found += 1
            agree += pick["class"] == truth[nearest]["class"]
    return agree / found if found else 0.0
