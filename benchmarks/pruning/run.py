"""Pruning benchmark (issue 3): PickerOptimizer rows against ablations and a
classical baseline, on real beta-galactosidase windows and on simulated
particles with ice, carbon and aggregates.

    nice -n 10 python benchmarks/pruning/run.py [--quick]

Writes benchmarks/pruning/results.json (updated after every row) and keeps
windows and models under benchmarks/work/pruning/. CPU only, one thread:
windows are downsampled to 48 px (real: 160 px box, 108 px particle, so
the particle spans 32 px) and the network input is 48 px instead of the
paper's 224 px.

No ImageNet weights are available offline here, so "this method" starts
from the plugin's base pruner (`engine.base_pruner`, what pruner training
starts from when no ImageNet weights are installed) pretrained on simulated
cryo-EM windows (another molecule, with ice, carbon, aggregates and
background), the stand-in for the paper's cryo-EM pretraining stage, here
on more windows and at this benchmark's network input; "random init" trains
from scratch.
"""
import argparse
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402

from cryoprune_scipion.engine import base_pruner, pruning, simulate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "..", "work", "pruning")
RESULTS = os.path.join(HERE, "results.json")
SIZE = 48
SNR = 0.1


def cached(name, make, quick=False):
    name += "_quick" if quick else ""
    path = os.path.join(WORK, name + ".npz")
    if not os.path.exists(path):
        os.makedirs(WORK, exist_ok=True)
        np.savez(path, **make())
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def real_windows(quick=False, size=SIZE, box=data.BOX):
    """(training, test) windows of the real micrographs, `box` micrograph
    pixels brought to `size` px, cached: the training windows from the first
    4 micrographs, the test windows from the last 16 (at the same centres
    whatever the size and box)."""
    names = data.micrograph_names()
    suffix = ("" if size == SIZE else "_%dpx" % size) + ("" if box == data.BOX else "_box%d" % box)
    train = cached("real_train" + suffix, lambda: data.real_windows(
        names[:4], 5 if quick else 60, size, seed=0, box=box), quick)
    test = cached("real_test" + suffix, lambda: data.real_windows(
        names[4:], 3 if quick else 25, size, seed=1, box=box), quick)
    return train, test


def as_dataset(windows, classes):
    return pruning.Dataset(list(classes), [windows[c] for c in classes])


def test_arrays(windows, classes):
    x = np.concatenate([windows[c] for c in classes])
    y = np.concatenate([np.full(len(windows[c]), k) for k, c in enumerate(classes)])
    return x, y


def epochs_for(n_train):
    """About 1,200 window presentations, between 6 and 30 epochs."""
    return int(np.clip(np.ceil(1200 / max(n_train, 1)), 6, 30))


def evaluate(probabilities, y, classes, seconds):
    metrics = pruning.classification_metrics(probabilities, y, classes)
    metrics["train_seconds"] = round(seconds, 1)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def train_cnn(train_windows, classes, n, initial, aux_weight, seed, epochs=None,
              input_size=SIZE, **settings):
    """(network, training seconds, training metadata) on n examples per class;
    `settings`: other TrainSettings fields (val_fraction, learning_rate, ...)."""
    settings = pruning.TrainSettings(input_size=input_size, few_shot=n, aux_weight=aux_weight,
                                     epochs=epochs or epochs_for(int(0.8 * n * len(classes))),
                                     batch=32, seed=seed, **settings)
    start = time.time()
    network, metadata = pruning.train(as_dataset(train_windows, classes), settings,
                                      initial_weights=initial, log=lambda s: None)
    return network, time.time() - start, metadata


def default_pruner(train_windows, n, seed, **options):
    """train_cnn of the pruner training's default from scratch on the real
    classes: SCRATCH_INPUT_SIZE windows and input, aux weight 0.5."""
    return train_cnn(train_windows, data.REAL_CLASSES, n, None, 0.5, seed,
                     input_size=pruning.SCRATCH_INPUT_SIZE, **options)


def default_probabilities(network, windows):
    """Class probabilities of `windows` with the prune command's default
    test-time copies."""
    return pruning.predict_probabilities(network, windows, pruning.SCRATCH_INPUT_SIZE,
                                         copies=pruning.TTA)


def default_row(network, seconds, x_test, y_test):
    """evaluate's row of `network` on the real test windows, scored with the
    prune command's default test-time copies."""
    return evaluate(default_probabilities(network, x_test), y_test, data.REAL_CLASSES, seconds)


def default_rows(path, box=data.BOX):
    """What a script of rows of the default pruner on the real windows starts
    with: torch on one thread, the training windows (`box` px brought to
    the default input), the test windows and labels, and the rows already
    in `path`."""
    one_thread()
    train, test = real_windows(size=pruning.SCRATCH_INPUT_SIZE, box=box)
    x_test, y_test = test_arrays(test, data.REAL_CLASSES)
    results = load_rows(path)
    results.update(copies=pruning.TTA, input_size=pruning.SCRATCH_INPUT_SIZE)
    return train, x_test, y_test, results


def cnn_row(train_windows, classes, n, x_test, y_test, initial, aux_weight, seed,
            epochs=None, input_size=SIZE):
    network, seconds, _ = train_cnn(train_windows, classes, n, initial, aux_weight, seed,
                                    epochs, input_size)
    probabilities = pruning.predict_probabilities(network, x_test, input_size)
    return evaluate(probabilities, y_test, classes, seconds)


def radial_power_spectra(windows):
    """Log radial power spectrum of each normalised window."""
    windows = pruning.normalise(windows)
    box = windows.shape[-1]
    power = np.abs(np.fft.fftshift(np.fft.fft2(windows), axes=(-2, -1))) ** 2
    yy, xx = np.indices((box, box)) - box // 2
    radius = np.hypot(xx, yy).astype(int).ravel()
    keep = radius < box // 2
    counts = np.bincount(radius[keep])
    flat = power.reshape(len(windows), -1)[:, keep]
    profile = np.stack([np.bincount(radius[keep], weights=f) for f in flat]) / counts
    return np.log(profile + 1e-6)


def fit_logistic(features, y, n_classes):
    """Multinomial logistic regression (L2) on standardised features; returns
    a function of other features' class probabilities."""
    import torch
    mean, std = features.mean(0), features.std(0) + 1e-6
    inputs = torch.tensor((features - mean) / std, dtype=torch.float32)
    target = torch.tensor(y)
    model = torch.nn.Linear(inputs.shape[1], n_classes)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=300)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), target) + \
            1e-2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    def probabilities(other):
        with torch.no_grad():
            return torch.softmax(model(torch.tensor((other - mean) / std,
                                                    dtype=torch.float32)), 1).numpy()
    return probabilities


def logistic_row(train_windows, classes, n, x_test, y_test, seed):
    """Multinomial logistic regression (L2) on radial power spectra."""
    rng = np.random.default_rng(seed)
    chosen = {c: train_windows[c][rng.permutation(len(train_windows[c]))[:n]]
              for c in classes}
    x, y = test_arrays(chosen, classes)
    start = time.time()
    predict = fit_logistic(radial_power_spectra(x), y, len(classes))
    seconds = time.time() - start
    return evaluate(predict(radial_power_spectra(x_test)), y_test, classes, seconds)


def load_rows(path):
    """The rows a script wrote to `path` so far ({"rows": {}} at first)."""
    if not os.path.exists(path):
        return {"rows": {}}
    with open(path) as f:
        return json.load(f)


def one_thread():
    """Torch on one thread and timestamped log lines, as the rows here
    run; returns the thread count."""
    import torch
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    return torch.get_num_threads()


def save(results, path=RESULTS):
    partial = "%s.%d.partial" % (path, os.getpid())
    with open(partial, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(partial, path)


def pretrain_base(quick):
    path = os.path.join(WORK, "base_quick" if quick else "base", "model.pt")
    if os.path.exists(path):
        return path
    settings = pruning.TrainSettings(input_size=SIZE, epochs=2 if quick else 4, batch=32,
                                     aux_weight=0.5, val_fraction=0.1)
    recipe = base_pruner.BaseRecipe(micrographs=40 if quick else 100, snr=SNR,
                                    training=settings)
    network, metadata = base_pruner.pretrain(recipe, log=logging.info)
    logging.info("base model validation: %s", metadata["validation"])
    pruning.save(network, metadata, os.path.dirname(path))
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--long", type=int, metavar="EPOCHS",
                        help="only add rows of this method trained for EPOCHS epochs "
                             "(real data, --shots) to the existing results")
    args = parser.parse_args()
    one_thread()
    output = os.path.join(WORK, "results_quick.json") if args.quick else RESULTS
    per_mic_train = 5 if args.quick else 60
    real_train, real_test = real_windows(args.quick)
    x_test, y_test = test_arrays(real_test, data.REAL_CLASSES)
    results = {"settings": {"window_box_px": data.BOX, "particle_diameter_px": data.DIAMETER,
                            "network_input_px": SIZE, "backbone": "resnet18",
                            "simulated_snr": SNR, "real_test_per_class": int(np.bincount(y_test)[0]),
                            "validation_fraction_of_labelled": 0.2},
               "real": {}, "simulated": {}}
    base = pretrain_base(args.quick)
    if args.long:
        with open(output) as f:
            results = json.load(f)
        for n in args.shots:
            label = "this method, %d epochs" % args.long
            results["real"][str(n)][label] = cnn_row(
                real_train, data.REAL_CLASSES, n, x_test, y_test, base, 0.5, seed=0,
                epochs=args.long)
            logging.info("real n=%d %s: %s", n, label, results["real"][str(n)][label])
            save(results, output)
        return
    shots = [s for s in args.shots if s <= per_mic_train * 4] if not args.quick else [5, 20]
    rows = {"this method": (base, 0.5), "without aux branch": (base, 0.0),
            "random init": (None, 0.5)}
    for n in shots:
        row = results["real"].setdefault(str(n), {})
        row["logistic regression on radial power spectra"] = logistic_row(
            real_train, data.REAL_CLASSES, n, x_test, y_test, seed=0)
        for label, (initial, aux) in rows.items():
            row[label] = cnn_row(real_train, data.REAL_CLASSES, n, x_test, y_test,
                                 initial, aux, seed=0)
            logging.info("real n=%d %s: %s", n, label, row[label])
            save(results, output)
    molecule = simulate.asymmetric_tetramer()
    sim_train = cached("sim_train", lambda: base_pruner.simulated_windows(
        10 if args.quick else 40, molecule, SNR, seed=2), args.quick)
    sim_test = cached("sim_test", lambda: base_pruner.simulated_windows(
        10 if args.quick else 60, molecule, SNR, seed=3), args.quick)
    xs, ys = test_arrays(sim_test, base_pruner.CLASSES)
    n = 10 if args.quick else 50
    row = results["simulated"].setdefault(str(n), {})
    row["logistic regression on radial power spectra"] = logistic_row(
        sim_train, base_pruner.CLASSES, n, xs, ys, seed=0)
    for label, (initial, aux) in rows.items():
        row[label] = cnn_row(sim_train, base_pruner.CLASSES, n, xs, ys, initial, aux, seed=0)
        logging.info("simulated n=%d %s: %s", n, label, row[label])
        save(results, output)


if __name__ == "__main__":
    main()
