"""2D classification benchmark on simulated particles of known view.

Rows added for issue 11: contrastive_refined (the same start, then the
refinement by multi-reference alignment of engine/refine.py, --passes) and
alignment_kmeans / alignment_ml (reference-free iterative alignment to class
averages from random seeds, hard or maximum-likelihood weights, written for
the benchmark in alignment_baseline.py).

Sets: the asymmetric tetramer seen from 10 directions (random in-plane
rotations, shifts up to 3 px, CTF with defocus 1.0-2.5 um) at SNR 1, 0.1,
0.05, 0.02, and a mixture of two molecules (tetramer and barrel, 5 views
each) at SNR 0.05; and, as an independent check of the simulator and the
molecule, ASPIRE's simulation of its synthetic asymmetric volume from 10
directions at SNR 0.1 and 0.05 (aspire_snr0.1, aspire_snr0.05: its own
offsets, amplitudes, CTF and noise; aspire_simulate.py, in the ASPIRE venv).
Rows: this method (contrastive encoder + k-means++ +
Fourier alignment); PCA + k-means on raw pixels; k-means on rotation- and
translation-invariant polar Fourier magnitudes; ASPIRE (RIR bispectrum
classification and class averaging, in its own venv); oracle (each particle
assigned to the clean view it matches best, one pass of the engine's
search: a bound that knows the views). Every method gets the particles
phase-flipped with their known CTF.

    nice -n 10 python benchmarks/classification/bench_simulated.py \
        --n 2000 --epochs 15 --out benchmarks/classification/results/simulated.json
    ... --timing 10000   # wall time of each method on 10,000 particles
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from locations import peer_program  # noqa: E402
from cryoprune_scipion.engine.refine import RefinementSettings  # noqa: E402

K = 10
SETS = {"snr1": (1.0, False), "snr0.1": (0.1, False), "snr0.05": (0.05, False),
        "snr0.02": (0.02, False), "mixture_snr0.05": (0.05, True)}
# The independent check: ASPIRE's simulator and molecule (aspire_simulate.py), SNR.
ASPIRE_SETS = {"aspire_snr0.1": 0.1, "aspire_snr0.05": 0.05}
ASPIRE_PYTHON = peer_program("aspire", "python")  # made by benchmarks/make_envs.sh


def contrastive_settings(epochs, seed, passes=0):
    from cryoprune_scipion.engine import classify2d, contrastive, refine
    return classify2d.ClassificationSettings(
        K, working_size=64, training=contrastive.TrainingSettings(epochs=epochs, seed=seed),
        refinement=refine.RefinementSettings(passes=passes))


def run_contrastive(images, ctf, folder, settings, initial_encoder=None):
    """classify2d on the particles. With refinement, `extra` also holds the
    clustering's labels handed to it (start_labels) and its seconds."""
    from cryoprune_scipion.engine import classify2d, refine
    from cryoprune_scipion.engine.io import write_stack
    path = os.path.join(folder, "particles.mrcs")
    write_stack(path, images, common.PIXEL_SIZE)
    refine_classification, start = refine.refine_classification, {}

    def timed_refinement(working, stacks, labels, *args, **kwargs):
        start["labels"], began = labels.copy(), time.time()
        result = refine_classification(working, stacks, labels, *args, **kwargs)
        start["seconds"] = time.time() - began
        return result
    refine.refine_classification = timed_refinement
    began = time.time()
    try:
        result = classify2d.classify([path], settings, folder, ctf=ctf,
                                     initial_encoder=initial_encoder)
    finally:
        refine.refine_classification = refine_classification
    seconds = time.time() - began
    averages = {k: result.averages[k - 1] for k in range(1, K + 1)}
    extra = {"final_loss": result.losses[-1] if result.losses else None,
             "refinement": result.refinement, "encoder": result.encoder}
    if start:
        extra.update(start_labels=start["labels"], refinement_seconds=start["seconds"])
    if result.scores:
        extra["class_scores"] = [{"particles": c.particles, "resolution_A": c.resolution *
                                  common.PIXEL_SIZE, "mean_correlation": c.mean_correlation}
                                 for c in result.scores]
    return result.labels, averages, seconds, extra


def oracle_labels(images, ctf, clean, folder):
    """Each particle assigned to the clean view it matches best: one pass of
    the engine's search with the clean projections as references (a bound
    that knows the views)."""
    from cryoprune_scipion.engine import contrastive, refine
    working = contrastive.make_working_stack([images], images.shape[-1],
                                             os.path.join(folder, "oracle_working.npy"), ctf)
    settings = refine.RefinementSettings(passes=1, cleanup_passes=0)
    return refine.refine(working, np.ones(len(images), int), K, settings,
                         references=clean).labels


def run_baseline(method, flipped, seed):
    start = time.time()
    labels = method(flipped, K, seed)
    seconds = time.time() - start
    return labels, common.class_averages(flipped, labels), seconds, {}


def run_aspire(flipped, labels_true, clean, folder, seed):
    """ASPIRE's own neighbourhoods and class averages; its bispectrum
    features clustered by k-means for the partition metrics."""
    images_path = os.path.join(folder, "flipped.npy")
    out_path = os.path.join(folder, "aspire.npz")
    np.save(images_path, flipped)
    subprocess.run([ASPIRE_PYTHON, os.path.join(os.path.dirname(__file__), "aspire_runner.py"),
                    images_path, str(K), out_path, str(common.PIXEL_SIZE)], check=True,
                   stdout=subprocess.DEVNULL, cwd=folder)  # ASPIRE logs to ./logs
    result = np.load(out_path)
    features = common.pca(result["features"], 20)
    labels = common.kmeans_plus_plus(features, K, seed)
    neighbours = result["neighbours"]
    purity = float(np.mean(labels_true[neighbours] == labels_true[neighbours[:, :1]]))
    # Each ASPIRE average is judged against the majority view of its neighbourhood.
    correlations = []
    import torch
    from cryoprune_scipion.engine import alignment
    mask = alignment.circular_mask(clean.shape[-1])
    for average, reference in zip(result["averages"], result["references"]):
        view = np.bincount(labels_true[neighbours[reference]]).argmax()
        target = torch.as_tensor(clean[view], dtype=torch.float32)
        image = torch.as_tensor(average, dtype=torch.float32)[None]
        angles, shifts, _ = alignment.align(image, target, iterations=4)
        correlations.append(float(alignment.pearson(alignment.untransform(image, angles, shifts),
                                                    target, mask)[0]))
    return labels, correlations, float(result["seconds"]), {
        "neighbour_purity": purity, "partition": "k-means on ASPIRE bispectrum features"}


def simulated(name, n, seed):
    """(images, labels, CTF parameters, clean views) of a set."""
    if name in ASPIRE_SETS:
        return common.aspire_set(ASPIRE_SETS[name], n, seed, K, ASPIRE_PYTHON)
    snr, mixture = SETS[name]
    images, labels, defoci, clean = common.simulate_set(snr, n, seed, mixture, K)
    return images, labels, common.ctf_of(defoci), clean


def evaluate(name, methods, n, epochs, seed, passes):
    snr, mixture = SETS[name] if name in SETS else (ASPIRE_SETS[name], False)
    images, labels_true, ctf, clean = simulated(name, n, seed)
    flipped = common.phase_flipped(images, ctf)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for method in methods:
            if method in ("contrastive", "contrastive_refined"):
                settings = contrastive_settings(
                    epochs, seed, passes if method == "contrastive_refined" else 0)
                labels, averages, seconds, extra = run_contrastive(images, ctf, folder,
                                                                   settings)
                del extra["encoder"]
                if "start_labels" in extra:
                    extra["start_accuracy"] = common.scores(
                        labels_true, extra.pop("start_labels"))["accuracy"]
            elif method in ("alignment_kmeans", "alignment_ml"):
                import alignment_baseline
                start = time.time()
                labels = alignment_baseline.classify(
                    flipped, K, seed, mode=method.split("_")[1])
                seconds = time.time() - start
                averages, extra = common.class_averages(flipped, labels), {}
            elif method == "oracle":
                start = time.time()
                labels = oracle_labels(images, ctf, clean, folder)
                seconds = time.time() - start
                averages, extra = common.class_averages(flipped, labels), {}
            elif method == "aspire":
                try:
                    labels, correlations, seconds, extra = run_aspire(
                        flipped, labels_true, clean, folder, seed)
                except (OSError, subprocess.CalledProcessError) as error:
                    rows[method] = {"error": str(error)}
                    continue
            else:
                baseline = {"pca_kmeans": common.pca_kmeans,
                            "polar_fourier_kmeans": common.polar_kmeans}[method]
                labels, averages, seconds, extra = run_baseline(baseline, flipped, seed)
            if method != "aspire":
                correlations = common.average_correlations(averages, labels_true, labels, clean)
            rows[method] = dict(common.scores(labels_true, labels), seconds=seconds,
                                average_correlation=float(np.mean(correlations)), **extra)
            print(name, method, json.dumps(rows[method]), flush=True)
    return {"snr": snr, "mixture": mixture, "n": n, "rows": rows,
            "simulator": "ASPIRE" if name in ASPIRE_SETS else "engine"}


def _read_results(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--sets", nargs="+", default=list(SETS),
                        choices=list(SETS) + list(ASPIRE_SETS))
    parser.add_argument("--methods", nargs="+",
                        default=["contrastive", "pca_kmeans", "polar_fourier_kmeans", "aspire"])
    parser.add_argument("--timing", type=int, metavar="N",
                        help="instead: time each method once on N particles at SNR 0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=RefinementSettings.passes,
                        help="refinement passes of the contrastive_refined row (default: "
                             "the engine's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    runs = [("timing_%d" % args.timing, "snr0.05", args.timing)] if args.timing else \
        [(name, name, args.n) for name in args.sets]
    for key, name, n in runs:
        entry = evaluate(name, args.methods, n, args.epochs, args.seed, args.passes)
        entry["epochs"] = args.epochs
        results = _read_results(args.out)  # afresh: runs on other sets may have written
        results.setdefault(key, {"rows": {}})
        results[key].update({k: v for k, v in entry.items() if k != "rows"})
        results[key]["rows"].update(entry["rows"])
        results["environment"] = {"cpu_threads": 1, "note": "2 CPU cores shared with other "
                                  "jobs, no GPU; torch.set_num_threads(1)"}
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
