"""The base pruner: a PickerOptimizer network pretrained on windows of
simulated micrographs (particles, ice, carbon edges, aggregates, empty
background), so that pruner training can have a cryo-EM starting point
without any download, standing in for the paper's cryo-EM pretraining stage;
training a pruner from it reuses its features and replaces its classifier.
On real beta-galactosidase windows it scored below training from scratch
(BENCHMARKS.md, pretraining over seeds), so it is a choice, not the default.
"""
import dataclasses

import numpy as np

from . import pruning, simulate
from .windows import extract_windows

CLASSES = ["particle", "ice", "carbon", "aggregate", "background"]
MICROGRAPH_SHAPE = (512, 512)
JUNK = ("ice", "ice", "carbon", "aggregate", "aggregate")  # per micrograph


def default_training():
    """About a minute on two CPU cores with the defaults of BaseRecipe."""
    return pruning.TrainSettings(input_size=64, epochs=4, batch=32, aux_weight=0.5,
                                 val_fraction=0.1)


@dataclasses.dataclass
class BaseRecipe:
    micrographs: int = 60      # about 1,000 windows
    snr: float = 0.1
    box: int = 64              # the barrel is about 37 px across at 3 A/px
    pixel_size: float = 3.0
    seed: int = 1              # of the simulation; the training has its own
    training: pruning.TrainSettings = dataclasses.field(default_factory=default_training)


def simulated_windows(n_micrographs, molecule, snr, box=64, pixel_size=3.0, seed=0):
    """{class: (n, box, box) windows} of simulated 512 x 512 micrographs, at
    the known particle and junk centres and on empty background."""
    out = {name: [] for name in CLASSES}
    rows, columns = MICROGRAPH_SHAPE
    for i in range(n_micrographs):
        rng = np.random.default_rng(seed * 100003 + i)
        mic = simulate.simulate_micrograph(MICROGRAPH_SHAPE, 8, pixel_size=pixel_size,
                                           snr=snr, defocus_um=rng.uniform(1.0, 2.5),
                                           molecule=molecule, junk=JUNK,
                                           seed=seed * 100003 + i)
        centres = {name: [] for name in CLASSES}
        centres["particle"] = [(p["x"], p["y"]) for p in mic.particles]
        for item in mic.junk:
            if item["kind"] == "carbon":  # windows along the film edge
                centres["carbon"] += [(item["x"] + rng.uniform(-box / 4, box / 4),
                                       rng.uniform(box, rows - box)) for _ in range(3)]
            else:
                centres[item["kind"]].append((item["x"], item["y"]))
        taken = np.array(centres["particle"] + [(j["x"], j["y"]) for j in mic.junk])
        carbon_x = max([j["x"] for j in mic.junk if j["kind"] == "carbon"], default=0)
        for _ in range(200):  # the film may leave little empty ice
            if len(centres["background"]) == 3:
                break
            xy = rng.uniform(box / 2, columns - box / 2, size=2)
            if xy[0] > carbon_x + box / 2 and np.min(np.hypot(*(taken - xy).T)) > box:
                centres["background"].append(tuple(xy))
        for name, xy in centres.items():
            if xy:
                out[name].append(extract_windows(mic.image, np.array(xy), box)[0])
    return {name: np.concatenate(w) for name, w in out.items()}


def pretrain(recipe=None, device="cpu", log=None):
    """Train the base pruner on windows of simulated barrels; returns
    (network, metadata) as `pruning.train` does, with the recipe in
    metadata["base_recipe"]."""
    recipe = recipe or BaseRecipe()
    windows = simulated_windows(recipe.micrographs, simulate.barrel(), recipe.snr,
                                recipe.box, recipe.pixel_size, recipe.seed)
    dataset = pruning.Dataset(list(CLASSES), [windows[name] for name in CLASSES])
    kwargs = {"log": log} if log else {}
    network, metadata = pruning.train(dataset, recipe.training, device, **kwargs)
    metadata["base_recipe"] = dataclasses.asdict(recipe)
    return network, metadata
