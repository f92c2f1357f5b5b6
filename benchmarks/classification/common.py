"""Simulated particle stacks with known views, the baseline classifiers and
the figures of merit shared by the classification benchmark scripts."""
import os
import subprocess
import tempfile

import numpy as np

from cryoprune_scipion.engine import alignment, contrastive, simulate
from cryoprune_scipion.engine.metrics import (adjusted_rand_index, clustering_accuracy,
                                              normalized_mutual_information)

BOX = 64
PIXEL_SIZE = 3.0


def view_directions(k=10):
    """k well separated directions (rot, tilt) on the upper hemisphere
    (a Fibonacci spiral), so that no view is the mirror of another."""
    i = np.arange(k) + 0.5
    tilt = np.degrees(np.arccos(1 - i / k))          # 0..90 degrees
    rot = (np.degrees(np.pi * (1 + 5 ** 0.5) * i)) % 360
    return list(zip(rot, tilt))


def simulate_set(snr, n, seed, mixture=False, k=10):
    """Particles, labels, defoci and the clean projection of each class.
    The mixture: two molecules (the asymmetric tetramer and a barrel), k/2
    views each."""
    molecules = [simulate.asymmetric_tetramer()]
    if mixture:
        molecules.append(simulate.barrel(radius=40.0, height=60.0, symmetry=5))
    directions = view_directions(k // len(molecules))
    parts = []
    for m, molecule in enumerate(molecules):
        count = n // len(molecules)
        images, labels, _, _, defoci = simulate.simulate_particle_stack(
            molecule, directions, count, BOX, PIXEL_SIZE, snr, max_shift=3.0,
            seed=seed + 101 * m)
        clean = np.stack([simulate.project(molecule, simulate.rotation_matrix(r, t, 0), BOX,
                                           PIXEL_SIZE) for r, t in directions])
        parts.append((images, labels + m * len(directions), defoci, clean))
    images, labels, defoci, clean = (np.concatenate(x) for x in zip(*parts))
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order], labels[order], defoci[order], clean


def aspire_set(snr, n, seed, k, python):
    """Particles, labels, CTF parameters and clean views simulated by ASPIRE
    (`aspire_simulate.py` run by `python`, the ASPIRE venv's interpreter)."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "set.npz")
        subprocess.run([python, os.path.join(os.path.dirname(__file__), "aspire_simulate.py"),
                        out, str(snr), str(n), str(k), str(seed), str(PIXEL_SIZE)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=folder)  # ASPIRE logs to ./logs
        with np.load(out) as f:
            stored = {key: f[key] for key in f.files}
    defocus = stored["defocus"]
    ctf = contrastive.CtfParameters(
        defocus, defocus, np.zeros_like(defocus), PIXEL_SIZE, float(stored["voltage"]),
        float(stored["spherical_aberration"]), float(stored["amplitude_contrast"]))
    _check_ctf_convention(stored, ctf)
    return stored["images"], stored["labels"], ctf, stored["clean"]


def _check_ctf_convention(stored, ctf):
    """Our CTF of ASPIRE's values must be ASPIRE's CTF, or the phase flip
    is wrong: stop rather than measure on it."""
    defoci = stored["ctf_defoci"]
    ours = np.fft.fftshift(contrastive.ctf_astigmatic(
        stored["ctf_grid"].shape[-1], ctf.sampling_rate, defoci, defoci,
        np.zeros_like(defoci), ctf.voltage, ctf.spherical_aberration,
        ctf.amplitude_contrast), axes=(-2, -1))
    for theirs, mine, defocus in zip(stored["ctf_grid"], ours, defoci):
        agreement = np.corrcoef(theirs.ravel(), mine.ravel())[0, 1]
        if agreement < 0.999:
            raise RuntimeError("ASPIRE's CTF at %g A defocus correlates with ours at "
                               "only %.4f: the conventions differ" % (defocus, agreement))


def ctf_of(defoci):
    return contrastive.CtfParameters(defoci * 1e4, defoci * 1e4, np.zeros_like(defoci),
                                     PIXEL_SIZE)


def phase_flipped(images, ctf):
    """What every method receives: phase-flipped, normalised particles."""
    flipped = contrastive.phase_flip(images.astype(np.float64), ctf, np.arange(len(images)))
    flipped -= flipped.mean(axis=(1, 2), keepdims=True)
    return (flipped / flipped.std(axis=(1, 2), keepdims=True)).astype(np.float32)


def kmeans_plus_plus(features, k, seed):
    from scipy.cluster.vq import kmeans2
    best = None
    for trial in range(4):
        centres, labels = kmeans2(features.astype(np.float64), k, minit="++",
                                  seed=seed + trial, iter=50)
        inertia = ((features - centres[labels]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    return best[1]


def pca(features, components):
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:components].T


def pca_kmeans(images, k, seed, components=20):
    """The alignment-free baseline: PCA of the masked raw pixels, k-means."""
    mask = alignment.circular_mask(images.shape[-1]).numpy()
    return kmeans_plus_plus(pca(images[:, mask], components), k, seed)


def polar_fourier_features(images, max_radius=16, harmonics=24):
    """Rotation- and translation-invariant features: the Fourier magnitude
    (no translation) on polar rings, then the magnitude of its angular
    Fourier series (no rotation)."""
    import torch
    box = images.shape[-1]
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(images), axes=(-2, -1)))
    grid, _ = alignment.polar_grid(box, n_angles=128)
    grid = grid[:, :max_radius]
    import torch.nn.functional as F
    polar = F.grid_sample(torch.as_tensor(np.log1p(spectrum), dtype=torch.float32)[:, None],
                          grid.expand(len(images), -1, -1, -1), align_corners=False)[:, 0]
    # Even harmonics only: |F| is centrosymmetric.
    invariant = torch.fft.rfft(polar, dim=-1).abs()[..., :harmonics:2]
    return invariant.reshape(len(images), -1).numpy()


def polar_kmeans(images, k, seed, components=20):
    features = polar_fourier_features(images)
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    return kmeans_plus_plus(pca(features, components), k, seed)


def scores(true_labels, predicted):
    return {"accuracy": clustering_accuracy(true_labels, predicted),
            "nmi": normalized_mutual_information(true_labels, predicted),
            "ari": adjusted_rand_index(true_labels, predicted)}


def class_averages(images, predicted, iterations=3):
    """Class averages of any partition, made with the Fourier alignment of
    the engine (so that baselines are judged by the purity of their classes)."""
    averages = {}
    for k in np.unique(predicted):
        members = np.flatnonzero(predicted == k)
        seed, _ = alignment.class_average(lambda idx: images[idx], members[:50],
                                          images[members[0]], 2)
        averages[k], _ = alignment.class_average(lambda idx: images[idx], members, seed,
                                                 iterations)
    return averages


def average_correlations(averages, true_labels, predicted, clean):
    """Correlation of each class average with the clean projection of the
    view matched to it (Hungarian), after aligning the average to it."""
    import torch
    from scipy.optimize import linear_sum_assignment
    from cryoprune_scipion.engine.metrics import contingency
    keys_true, keys_pred = np.unique(true_labels), np.unique(predicted)
    table = contingency(true_labels, predicted)
    rows, cols = linear_sum_assignment(-table)
    mask = alignment.circular_mask(clean.shape[-1])
    values = []
    for r, c in zip(rows, cols):
        average = torch.as_tensor(averages[keys_pred[c]], dtype=torch.float32)[None]
        reference = torch.as_tensor(clean[keys_true[r]], dtype=torch.float32)
        angles, shifts, _ = alignment.align(average, reference, iterations=4, cutoff=0.25)
        aligned = alignment.untransform(average, angles, shifts)
        values.append(float(alignment.pearson(aligned, reference, mask)[0]))
    return values
