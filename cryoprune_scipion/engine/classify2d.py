"""Contrastive 2D classification from particle stacks to classes, aligned
particles and weighted class averages (what `cryoprune classify2d` runs)."""
import dataclasses
import logging
import os
import tempfile

import numpy as np

from . import alignment, clustering, contrastive, ranking, refine
from .io import InputError, write_stack, write_table

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ClassificationSettings:
    n_classes: int
    working_size: int = 64
    align_iterations: int = 3
    feature_rotations: int = 8
    training: contrastive.TrainingSettings = dataclasses.field(
        default_factory=contrastive.TrainingSettings)
    # Refinement and ranking after the clustering (engine/refine.py, engine/ranking.py)
    refinement: refine.RefinementSettings = dataclasses.field(
        default_factory=refine.RefinementSettings)
    class_order: str = "size"


@dataclasses.dataclass
class Classification:
    labels: np.ndarray        # (n,) classes 1..K, class 1 the largest
    angles: np.ndarray        # (n,) degrees, see alignment.py
    shifts: np.ndarray        # (n, 2) pixels of the input particles
    weights: np.ndarray       # (n,) weight in the class average
    averages: np.ndarray      # (K, box, box), class k at position k - 1
    features: np.ndarray      # (n, d) L2-normalised encoder features
    losses: list = dataclasses.field(default_factory=list)  # per epoch
    encoder: object = None    # the trained torch module
    working_size: int = 0
    scores: list = dataclasses.field(default_factory=list)      # ranking.ClassScore per class
    refinement: list = dataclasses.field(default_factory=list)  # per refinement pass


def classify(paths, settings, out_dir, device=None, ctf=None, initial_encoder=None,
             checkpoint=None, resume=False):
    """Train (or continue) the encoder, cluster its features, align and
    average every class. The memory-mapped working stack lives in `out_dir`
    while running and is removed at the end. `checkpoint` and `resume`: see
    `contrastive.train_encoder`."""
    stacks = contrastive.open_stacks(paths)
    n = sum(len(s) for s in stacks)
    if settings.n_classes > n:
        raise InputError("%d classes asked for but %s hold only %d particles; ask for at "
                         "most %d classes" % (settings.n_classes, ", ".join(paths), n, n))
    encoder, working_size = None, settings.working_size
    if initial_encoder:
        encoder, metadata = contrastive.load_encoder(initial_encoder, device)
        working_size = metadata["working_size"]
        settings.training.feature_size = metadata["feature_size"]
    # A name of its own: a file left by a killed run is never reused or clobbered.
    handle, working_path = tempfile.mkstemp(prefix="working-stack-", suffix=".npy",
                                            dir=out_dir)
    os.close(handle)
    try:
        working = contrastive.make_working_stack(stacks, working_size, working_path, ctf,
                                                 names=list(paths))
        logger.info("%d particles of %d px, working size %d px", n, stacks[0].shape[-1],
                    working.shape[-1])
        losses = []
        if settings.training.epochs > 0 or encoder is None:
            encoder, losses = contrastive.train_encoder(working, settings.training, device,
                                                        encoder, checkpoint, resume)
        features = contrastive.encode(working, encoder, device=device,
                                      rotations=settings.feature_rotations)
        labels, centres = clustering.kmeans(features, settings.n_classes,
                                            seed=settings.training.seed, device=device)
        logger.info("class sizes: %s", np.bincount(labels, minlength=settings.n_classes + 1)[1:])
        if settings.refinement.passes > 0:
            result = refine.refine_classification(working, stacks, labels, features, settings,
                                                  device, ctf)
        else:
            result = _align_classes(working, stacks, labels, features, centres, settings, device,
                                    ctf)
        result = ranking.rank_classes(result, stacks, settings.n_classes, settings.class_order,
                                      device, ctf)
    finally:
        if os.path.exists(working_path):
            os.remove(working_path)
    result.losses = losses
    result.encoder = encoder
    result.working_size = working.shape[-1]
    return result


def _align_classes(working, stacks, labels, features, centres, settings, device, ctf):
    """Align each class at the working size, then average the particles at
    their own size with those alignments."""
    n, size = len(working), working.shape[-1]
    box = stacks[0].shape[-1]
    angles, shifts, weights = np.zeros(n), np.zeros((n, 2)), np.zeros(n)

    def read(indices):
        return contrastive.read_batch(working, indices)
    for k in range(1, settings.n_classes + 1):
        members = np.flatnonzero(labels == k)
        # Seed: the members closest to the class centre, aligned to the closest.
        closest = members[np.argsort(-(features[members] @ centres[k - 1]))]
        seed, _ = alignment.class_average(read, closest[:50], working[closest[0]], 2,
                                          device=device)
        _, aligned = alignment.class_average(read, members, seed, settings.align_iterations,
                                             device=device)
        angles[members] = aligned.angles
        shifts[members] = aligned.shifts * (box / size)
        weights[members] = np.clip(aligned.correlations, 0, None)
        logger.info("class %d: %d particles, mean correlation %.3f", k, len(members),
                    aligned.correlations.mean())
    averages = _average_full_size(stacks, labels, angles, shifts, weights,
                                  settings.n_classes, device, ctf)
    return Classification(labels, angles, shifts, weights, averages, features)


def _average_full_size(stacks, labels, angles, shifts, weights, n_classes, device, ctf,
                       batch=512):
    import torch
    box = stacks[0].shape[-1]
    sums = torch.zeros(n_classes, box, box, dtype=torch.float32, device=device)
    totals = np.zeros(n_classes)
    offset = 0
    for stack in stacks:
        for start in range(0, len(stack), batch):
            first = offset + start
            images = np.asarray(stack[start:start + batch], dtype=np.float64)
            index = np.arange(first, first + len(images))
            if ctf is not None:
                images = contrastive.phase_flip(images, ctf, index)
            images = (images - images.mean(axis=(1, 2), keepdims=True)) / \
                np.maximum(images.std(axis=(1, 2), keepdims=True), 1e-12)
            aligned = alignment.untransform(
                torch.as_tensor(images, dtype=torch.float32, device=device),
                torch.as_tensor(angles[index], dtype=torch.float32, device=device),
                torch.as_tensor(shifts[index], dtype=torch.float32, device=device))
            w = torch.as_tensor(weights[index], dtype=torch.float32, device=device)
            classes = torch.as_tensor(labels[index] - 1, device=device)
            sums.index_add_(0, classes, aligned * w[:, None, None])
            np.add.at(totals, labels[index] - 1, weights[index])
        offset += len(stack)
    return (sums.cpu().numpy() / np.maximum(totals, 1e-12)[:, None, None]).astype(np.float32)


def write_results(result, out_dir, sampling_rate=None, metadata=None):
    """classes.csv, alignment.csv, averages.mrcs, class_scores.csv, encoder.pt and
    model.json."""
    n = len(result.labels)
    write_table(os.path.join(out_dir, "classes.csv"), ["index", "class"],
                ({"index": i, "class": int(result.labels[i])} for i in range(n)))
    write_table(os.path.join(out_dir, "alignment.csv"),
                ["index", "class", "angle", "shift_x", "shift_y", "weight"],
                ({"index": i, "class": int(result.labels[i]),
                  "angle": "%.3f" % result.angles[i], "shift_x": "%.3f" % result.shifts[i, 0],
                  "shift_y": "%.3f" % result.shifts[i, 1], "weight": "%.5f" % result.weights[i]}
                 for i in range(n)))
    write_stack(os.path.join(out_dir, "averages.mrcs"), result.averages, sampling_rate)
    ranking.write_scores(result.scores, out_dir, sampling_rate)
    contrastive.save_encoder(result.encoder, out_dir, dict(
        metadata or {}, working_size=int(result.working_size),
        feature_size=int(result.features.shape[1]), refinement_passes=len(result.refinement),
        final_loss=float(result.losses[-1]) if result.losses else None))
