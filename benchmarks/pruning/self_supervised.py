"""Self-supervised pretraining of the pruner's backbone on unlabelled
windows (SimCLR).

What a user has before labelling anything: windows at candidate positions
(the picker's picks, or any positions on the micrographs). Two augmented
views of each window (the pruner's own augmentations: any in-plane rotation,
mirror flips, small shifts, noise, contrast jitter) pass through the
backbone and a projection head; the NT-Xent loss of 2D classification pulls
the two views together and pushes them from the other windows of the batch.
Shifts stay small on purpose: an off-centre window must not look like a
centred one to the classifier trained afterwards.

The result is saved in the pruner format with no classes and only the
backbone's weights, so that pruner training can start from it
(`pruning.train(..., initial_weights=path)` reuses the matching layers);
it cannot prune by itself. Written for the benchmark only: it did not beat
training from scratch beyond the spread over seeds (BENCHMARKS.md), so the
plugin does not offer it.
"""
import dataclasses
import logging

import numpy as np

from cryoprune_scipion.engine import pruning
from cryoprune_scipion.engine.contrastive import nt_xent
from cryoprune_scipion.engine.io import InputError

logger = logging.getLogger(__name__)

PROJECTION_SIZE = 128


@dataclasses.dataclass
class PretrainSettings:
    backbone: str = "resnet18"
    input_size: int = 224
    epochs: int = 10
    batch: int = 64            # the other windows of a batch are the negatives
    learning_rate: float = 1e-3
    temperature: float = 0.2
    noise: float = 0.5         # largest added noise of a view, in window std
    seed: int = 0


def projection_head(channels):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                         nn.Linear(channels, PROJECTION_SIZE))


def _views_loss(network, head, batch, settings, generator):
    """NT-Xent of two augmented views of a (n, 3, s, s) batch."""
    import torch

    def project(views):
        return head(torch.flatten(network.pool(network.features(views)), 1))
    z1 = project(pruning.augment(batch, generator, noise=settings.noise))
    z2 = project(pruning.augment(batch, generator, noise=settings.noise))
    return nt_xent(z1, z2, settings.temperature)


def pretrain(windows, settings, device="cpu", log=logger.info):
    """Pretrain a pruner backbone on unlabelled (n, box, box) windows;
    returns (network, metadata) with the mean loss of each epoch in
    metadata["pretraining"]["losses"]."""
    import torch
    windows = np.asarray(windows, dtype=np.float32)
    bad = ~pruning.finite_mask(windows)
    if bad.any():
        raise InputError("windows %s hold NaN or infinite values; remove them"
                         % np.flatnonzero(bad)[:10].tolist())
    batch = min(settings.batch, len(windows))
    if batch < 2:
        raise InputError("self-supervised pretraining needs at least 2 windows, found %d"
                         % len(windows))
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    network = pruning.build_network(settings.backbone, 1).to(device)
    head = projection_head(network.head.in_features).to(device)
    parameters = list(network.features.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=1e-4)
    steps_per_epoch = len(windows) // batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.learning_rate, total_steps=settings.epochs * steps_per_epoch,
        pct_start=0.1)
    losses = []
    network.train()
    for epoch in range(settings.epochs):
        order = rng.permutation(len(windows))
        total = 0.0
        for first in range(0, steps_per_epoch * batch, batch):
            chosen = np.sort(order[first:first + batch])
            images = pruning.to_network_input(windows[chosen], settings.input_size, device)
            loss = _views_loss(network, head, images, settings, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        losses.append(total / steps_per_epoch)
        log("self-supervised epoch %d/%d: loss %.4f" % (epoch + 1, settings.epochs,
                                                        losses[-1]))
    metadata = {"kind": "pruner", "classes": [], "box_size": int(windows.shape[-1]),
                "backbone": settings.backbone, "input_size": settings.input_size,
                "pretraining": {"method": "SimCLR (NT-Xent) on unlabelled windows",
                                "settings": dataclasses.asdict(settings),
                                "windows": len(windows), "losses": losses}}
    return network.eval(), metadata


def save(network, metadata, out_dir):
    """The pretrained backbone in the pruner format (classifier left out)."""
    import torch.nn as nn
    backbone = nn.Module()
    backbone.features = network.features
    return pruning.save(backbone, metadata, out_dir)
