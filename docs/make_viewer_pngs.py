"""Make the viewer pictures of the README from simulated data:

    python docs/make_viewer_pngs.py [--out docs]

Picks are the simulated particles, scored high, and false picks on junk
and background, scored low: what a picker gives, with a known answer. The
pruner training pictures come from a small pruner trained here on windows
of simulated micrographs (a minute or two on a CPU).
"""
import argparse
import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cryoprune_scipion.engine import pruning
from cryoprune_scipion.engine.base_pruner import simulated_windows
from cryoprune_scipion.engine.simulate import (VIEWS, asymmetric_tetramer, barrel, project,
                                               rotation_matrix, simulate_micrograph)
from cryoprune_scipion.engine.plots import (ClassAverage, Picks, draw_class_gallery,
                                             draw_precision_recall, draw_score_histogram,
                                             draw_training_history,
                                             draw_validation_histogram, match_to_reference,
                                             picks_figure, validation_picks)

PIXEL_SIZE = 3.0
BOX_SIZE = 64
THRESHOLD = 0.4
FALSE_PICKS = 25


def simulated_picks(rng):
    """A micrograph, its picks and the true particles as Picks."""
    simulated = simulate_micrograph((768, 768), n_particles=30, pixel_size=PIXEL_SIZE,
                                    snr=1.0, junk=("ice", "ice"), seed=3)
    truth = [{"x": p["x"], "y": p["y"], "class": p["view"], "score": 1.0}
             for p in simulated.particles]
    found = [dict(t, x=t["x"] + rng.normal(0, 3), score=rng.beta(5, 2)) for t in truth[:-3]]
    false = [{"x": x, "y": y, "class": rng.choice(list(VIEWS)), "score": rng.beta(2, 5)}
             for x, y in rng.uniform(BOX_SIZE, 768 - BOX_SIZE, (FALSE_PICKS, 2))]
    return simulated.image, Picks.from_rows(found + false), Picks.from_rows(truth)


def simulated_classes(rng):
    """Averages of projections of a four-lobed molecule, noisier the
    smaller the class."""
    molecule = asymmetric_tetramer()
    classes = []
    for number, (rot, tilt) in enumerate(rng.uniform(0, 180, (12, 2)), start=1):
        size = int(rng.integers(20, 400))
        image = project(molecule, rotation_matrix(rot, tilt, 0), 48, PIXEL_SIZE)
        image = image + rng.normal(0, image.std() * 3 / np.sqrt(size), image.shape)
        resolution = 2 * PIXEL_SIZE * (1 + 40 / np.sqrt(size))
        classes.append(ClassAverage(number, size, image, resolution, 0.2 + size / 1000))
    return classes


def trained_pruner_metadata():
    """The metadata (history, validation windows) of a pruner trained on
    windows of simulated barrels, ice, carbon, aggregates and background."""
    windows = simulated_windows(16, barrel(), snr=0.03, box=48, seed=5)
    dataset = pruning.Dataset(list(windows), list(windows.values()))
    _, metadata = pruning.train(dataset, pruning.TrainSettings(input_size=48, epochs=12))
    return metadata


def save(figure, path):
    """PNG in 64 colours: a few tens of kilobytes."""
    figure.savefig(path, dpi=80, bbox_inches="tight")
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    print("%s: %d kB" % (path, os.path.getsize(path) // 1024))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    out = parser.parse_args().out
    rng = np.random.default_rng(8)
    image, picks, truth = simulated_picks(rng)

    figure = Figure(figsize=(7, 7.4))
    picks_figure(figure, image, picks, BOX_SIZE, THRESHOLD, "simulated micrograph",
                 list(VIEWS))
    save(figure, os.path.join(out, "viewer_picks.png"))

    figure = Figure(figsize=(6, 3.6))
    draw_score_histogram(figure.add_subplot(), picks, THRESHOLD, "YOLO confidence")
    save(figure, os.path.join(out, "viewer_scores.png"))

    figure = Figure(figsize=(4.5, 4.2))
    matched, scores, count = match_to_reference(picks, truth, BOX_SIZE / 2)
    draw_precision_recall(figure.add_subplot(), matched, scores, count, THRESHOLD)
    save(figure, os.path.join(out, "viewer_precision_recall.png"))

    figure = Figure(figsize=(7, 7))
    draw_class_gallery(figure, simulated_classes(rng), "size")
    save(figure, os.path.join(out, "viewer_classes.png"))

    metadata = trained_pruner_metadata()
    figure = Figure(figsize=(9, 3.6))
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    draw_training_history(loss_ax, accuracy_ax, metadata["history"], metadata["best_epoch"])
    save(figure, os.path.join(out, "viewer_pruner_curves.png"))

    figure = Figure(figsize=(6, 3.6))
    draw_validation_histogram(figure.add_subplot(),
                              validation_picks(metadata["validation_windows"],
                                               metadata["classes"]),
                              metadata["classes"][0], 0.5)
    save(figure, os.path.join(out, "viewer_pruner_validation.png"))


if __name__ == "__main__":
    main()
