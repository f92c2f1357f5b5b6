"""Contrastive (SimCLR) particle encoder with cryo-EM augmentations.

The particles are first brought to a working stack: phase-flipped when the
CTF is known, Fourier-cropped to the working size and normalised, written to
a memory-mapped file so that training and encoding read one batch at a time.
Two random augmentations of each particle (any in-plane rotation, flips,
small shifts, noise, random low-pass, contrast and brightness jitter, a
circular mask) are pulled together by the NT-Xent loss and pushed away from
the other particles of the batch.
"""
import dataclasses
import logging
import os

import numpy as np

from ..constants import MODEL_METADATA
from .io import InputError, read_model_metadata, read_stack, replacing, write_json
from .simulate import ctf_from_defocus
from .training_state import EpochLog, fingerprint, load_state, save_state
from .windows import downsample_windows

logger = logging.getLogger(__name__)

ARCHITECTURE = "cryoprune-cnn-v1"
ENCODER_WEIGHTS = "encoder.pt"


@dataclasses.dataclass
class Augmentations:
    rotation: bool = True
    flip: bool = False      # merges mirror views; off unless they should be one class
    shift: float = 0.05     # fraction of the box
    noise: float = 0.5      # largest added noise, in units of the particle's std
    lowpass: bool = True
    jitter: bool = True
    mask: bool = True


@dataclasses.dataclass
class TrainingSettings:
    epochs: int = 20
    batch: int = 256
    temperature: float = 0.2
    feature_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    augmentations: Augmentations = dataclasses.field(default_factory=Augmentations)


# ---------------------------------------------------------------- particles

@dataclasses.dataclass
class CtfParameters:
    """Per-particle defocus (Angstrom, U and V) and astigmatism angle (degrees),
    with the microscope values shared by the stack."""
    defocus_u: np.ndarray
    defocus_v: np.ndarray
    defocus_angle: np.ndarray
    sampling_rate: float
    voltage: float = 300.0
    spherical_aberration: float = 2.7
    amplitude_contrast: float = 0.1


def ctf_astigmatic(box, sampling_rate, defocus_u, defocus_v, defocus_angle, voltage=300.0,
                   spherical_aberration=2.7, amplitude_contrast=0.1):
    """CTFs (n, box, box) on the unshifted FFT grid, the convention of
    `simulate.ctf` (positive defocus is underfocus) with astigmatism."""
    k = np.fft.fftfreq(box, d=sampling_rate)
    kx, ky = np.meshgrid(k, k)
    k2 = kx ** 2 + ky ** 2
    azimuth = np.arctan2(ky, kx)
    u, v, angle = (np.asarray(a, dtype=float)[:, None, None]
                   for a in (defocus_u, defocus_v, defocus_angle))
    defocus = 0.5 * (u + v) + 0.5 * (u - v) * np.cos(2 * (azimuth - np.radians(angle)))
    return ctf_from_defocus(k2, defocus, voltage, spherical_aberration, amplitude_contrast)


def read_ctf_table(path, n_particles, sampling_rate, **microscope):
    """A CTF CSV with columns index, defocus_u, defocus_v (Angstrom) and
    defocus_angle (degrees), one row per particle of the stack."""
    import csv
    if not os.path.isfile(path):
        raise InputError("%s: CTF table not found; check the --ctf path" % path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"index", "defocus_u", "defocus_v", "defocus_angle"}
    if not rows or not needed <= set(rows[0]):
        raise InputError("%s: a CTF table needs the columns %s" % (path, ", ".join(sorted(needed))))
    table = np.zeros((n_particles, 3))
    seen = np.zeros(n_particles, dtype=bool)
    for line, row in enumerate(rows, start=2):
        try:
            index = int(row["index"])
            table[index] = [float(row[c]) for c in ("defocus_u", "defocus_v", "defocus_angle")]
            seen[index] = True
        except (ValueError, IndexError):
            raise InputError("%s, line %d: index must be 0..%d and the defocus values "
                             "numbers" % (path, line, n_particles - 1))
    if not seen.all():
        raise InputError("%s: no CTF for %d particles (first: index %d); give one row per "
                         "particle" % (path, (~seen).sum(), np.flatnonzero(~seen)[0]))
    return CtfParameters(table[:, 0], table[:, 1], table[:, 2], sampling_rate, **microscope)


def open_stacks(paths):
    """The particles of one or more MRC stacks of one box size, as a list of
    memory-mapped arrays."""
    stacks = [read_stack(path) for path in paths]
    for path, stack in zip(paths, stacks):
        if stack.shape[-1] != stack.shape[-2]:
            raise InputError("%s: particles must be square, found %d x %d"
                             % (path, stack.shape[-1], stack.shape[-2]))
        if stack.shape[-1] != stacks[0].shape[-1]:
            raise InputError("%s: particles of %d px, but %s has %d px; all particles "
                             "must have one box size (re-extract or rescale them)"
                             % (path, stack.shape[-1], paths[0], stacks[0].shape[-1]))
    return stacks


def make_working_stack(stacks, working_size, path, ctf=None, batch=1024, names=None):
    """Write the particles, phase-flipped when `ctf` is given, Fourier-cropped
    to `working_size` and normalised to zero mean and unit variance, into a
    memory-mapped .npy file at `path`. Refuses NaN and constant images.

    Returns the memory-mapped array (n, size, size)."""
    names = names or ["stack %d" % i for i in range(len(stacks))]
    box = stacks[0].shape[-1]
    size = min(working_size, box)
    total = sum(len(s) for s in stacks)
    working = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                        shape=(total, size, size))
    offset = 0
    for name, stack in zip(names, stacks):
        for start in range(0, len(stack), batch):
            images = np.asarray(stack[start:start + batch], dtype=np.float64)
            first = offset + start
            _check_images(images, name, start)
            if ctf is not None:
                images = phase_flip(images, ctf, np.arange(first, first + len(images)))
            images = downsample_windows(images, size)
            mean = images.mean(axis=(1, 2), keepdims=True)
            std = images.std(axis=(1, 2), keepdims=True)
            working[first:first + len(images)] = (images - mean) / np.maximum(std, 1e-12)
        offset += len(stack)
    working.flush()
    return working


def _check_images(images, name, start):
    finite = np.isfinite(images).all(axis=(1, 2))
    if not finite.all():
        raise InputError("%s: particle %d holds NaN or infinite values; remove it (or "
                         "re-extract) before classifying"
                         % (name, start + np.flatnonzero(~finite)[0]))
    flat = images.std(axis=(1, 2)) < 1e-8 * (np.abs(images).max(axis=(1, 2)) + 1e-30)
    flat |= images.std(axis=(1, 2)) == 0
    if flat.any():
        raise InputError("%s: particle %d is a constant image (no signal); remove it "
                         "before classifying" % (name, start + np.flatnonzero(flat)[0]))


def phase_flip(images, ctf, indices):
    """Multiply each particle's Fourier transform by the sign of its CTF."""
    transfer = ctf_astigmatic(images.shape[-1], ctf.sampling_rate, ctf.defocus_u[indices],
                              ctf.defocus_v[indices], ctf.defocus_angle[indices],
                              ctf.voltage, ctf.spherical_aberration, ctf.amplitude_contrast)
    return np.fft.ifft2(np.fft.fft2(images) * np.sign(transfer)).real


# ------------------------------------------------------------------ network

def build_encoder(feature_size=128):
    """A small CNN for particles of 64 to 128 px: strided 3x3 convolutions
    with batch norm, global average pooling, a linear layer to the features."""
    import torch.nn as nn

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]
    # Stride 2 first: at 64 px the particle's detail is a few pixels wide, and
    # the cost then stays within what a CPU can train.
    layers = (block(1, 16, 2) + block(16, 32, 2) + block(32, 32, 1) + block(32, 64, 2)
              + block(64, 64, 1) + block(64, 128, 2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, feature_size))


def build_head(feature_size=128, projection_size=64):
    """The SimCLR projection head; the loss sees its output, the clustering
    the encoder's."""
    import torch.nn as nn
    return nn.Sequential(nn.Linear(feature_size, feature_size), nn.ReLU(inplace=True),
                         nn.Linear(feature_size, projection_size))


def nt_xent(z1, z2, temperature):
    """NT-Xent: each projection's positive is the other view of its particle,
    the other 2N - 2 projections of the batch are negatives."""
    import torch
    import torch.nn.functional as F
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, targets)


def soft_mask(size, device=None):
    """Circular mask with a cosine edge of 3 px, radius just inside the box."""
    import torch
    axis = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    radius = torch.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
    outer = size / 2 - 1
    edge = ((outer - radius) / 3).clamp(0, 1)
    return 0.5 - 0.5 * torch.cos(np.pi * edge)


def augment(images, settings, generator):
    """One random view of each particle of a (b, size, size) tensor."""
    import torch
    import torch.nn.functional as F
    b, size = images.shape[0], images.shape[-1]
    device = images.device

    def uniform(low, high, *shape):
        return (torch.rand(*(shape or (b,)), generator=generator) * (high - low) + low).to(device)
    angle = uniform(0, 2 * np.pi) if settings.rotation else torch.zeros(b, device=device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    mirror = (torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if settings.flip
              else torch.ones(b, device=device))
    shift = uniform(-2 * settings.shift, 2 * settings.shift, b, 2)
    matrix = torch.stack([torch.stack([cos * mirror, -sin], -1),
                          torch.stack([sin * mirror, cos], -1)], 1)
    grid = F.affine_grid(torch.cat([matrix, shift[:, :, None]], -1), (b, 1, size, size),
                         align_corners=False)
    views = F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False)[:, 0]
    if settings.lowpass:
        k = torch.fft.fftfreq(size, device=device)
        k2 = k[:, None] ** 2 + k[None, :] ** 2
        cutoff = uniform(0.08, 0.5)
        keep = uniform(0, 1) < 0.5
        transfer = torch.exp(-k2[None] / (2 * cutoff[:, None, None] ** 2))
        transfer = torch.where(keep[:, None, None], transfer, torch.ones_like(transfer))
        views = torch.fft.ifft2(torch.fft.fft2(views) * transfer).real
    if settings.noise > 0:
        level = uniform(0, settings.noise)[:, None, None]
        views = views + level * torch.randn(views.shape, generator=generator).to(device)
    if settings.jitter:
        views = views * uniform(0.8, 1.2)[:, None, None] + uniform(-0.2, 0.2)[:, None, None]
    return standardise(views, soft_mask(size, device) if settings.mask else None)


def standardise(images, mask=None):
    """Zero mean and unit variance per image, then the mask."""
    mean = images.mean(dim=(1, 2), keepdim=True)
    std = images.std(dim=(1, 2), keepdim=True).clamp(min=1e-6)
    images = (images - mean) / std
    return images * mask if mask is not None else images


def read_batch(stack, indices):
    """Rows of a memory-mapped stack, read in file order."""
    indices = np.asarray(indices)
    order = np.argsort(indices)
    batch = np.empty((len(indices),) + stack.shape[1:], dtype=np.float32)
    batch[order] = stack[indices[order]]
    return batch


def train_encoder(stack, settings, device=None, encoder=None, checkpoint=None, resume=False):
    """Train the encoder (and its projection head) on a working stack.

    `encoder`: a starting encoder (continued training), else a fresh one.
    `checkpoint`: a file where the training state is saved after every
    epoch; with `resume`, training continues from the state saved there by
    an interrupted run of the same settings and particles (from the start
    when there is none). Returns the encoder in evaluation mode and the
    per-epoch losses."""
    import torch
    batch = min(settings.batch, len(stack))
    if batch < 2:
        raise InputError("contrastive training needs at least 2 particles, found %d" % len(stack))
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    run = {"settings": dataclasses.asdict(settings), "particles": _stack_fingerprint(stack),
           "initial_encoder": fingerprint(*[v.cpu().numpy() for v in
                                            encoder.state_dict().values()]) if encoder else ""}
    state = load_state(checkpoint, run) if checkpoint and resume else None
    encoder = (encoder or build_encoder(settings.feature_size)).to(device)
    head = build_head(settings.feature_size).to(device)
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, settings.epochs))
    losses = []
    if state:
        encoder.load_state_dict(state["encoder"])
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        losses = state["losses"]
        logger.info("resuming from %s: %d of %d epochs done", checkpoint, state["epoch"],
                    settings.epochs)
    progress = EpochLog(settings.epochs)
    for epoch in range(len(losses) + 1, settings.epochs + 1):
        encoder.train()
        head.train()
        order = rng.permutation(len(stack))
        total, steps = 0.0, 0
        for first in range(0, len(order) - batch + 1, batch):
            images = torch.from_numpy(read_batch(stack, order[first:first + batch])).to(device)
            z1 = head(encoder(augment(images, settings.augmentations, generator)[:, None]))
            z2 = head(encoder(augment(images, settings.augmentations, generator)[:, None]))
            loss = nt_xent(z1, z2, settings.temperature)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
            steps += 1
        schedule.step()
        losses.append(total / max(steps, 1))
        if checkpoint:
            save_state(checkpoint, {
                "run": run, "epoch": epoch, "encoder": encoder.state_dict(),
                "head": head.state_dict(), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(), "rng": rng.bit_generator.state,
                "generator": generator.get_state(), "losses": losses})
        progress.done(epoch, {"loss": losses[-1]})
    return encoder.eval(), losses


def _stack_fingerprint(stack, samples=64):
    """A fingerprint of a working stack from its shape and a few particles
    spread over it (hashing all of a large stack would take long)."""
    picked = np.unique(np.linspace(0, len(stack) - 1, min(len(stack), samples)).astype(int))
    return fingerprint(np.array(stack.shape), np.asarray(stack[picked]))


def encode(stack, encoder, batch=512, device=None, rotations=8, mask=True):
    """L2-normalised features (n, d) of a working stack; each particle's
    features are averaged over `rotations` in-plane rotations so that they
    depend less on its orientation."""
    import torch
    from .alignment import transform
    size = stack.shape[-1]
    window = soft_mask(size, device) if mask else None
    features = []
    encoder.eval()
    with torch.no_grad():
        for first in range(0, len(stack), batch):
            images = torch.from_numpy(
                np.asarray(stack[first:first + batch], dtype=np.float32)).to(device)
            total = 0
            for k in range(rotations):
                angle = torch.full((len(images),), 360.0 * k / rotations, device=device)
                turned = transform(images, angle, torch.zeros(len(images), 2, device=device))
                out = encoder(standardise(turned, window)[:, None])
                total = total + torch.nn.functional.normalize(out, dim=1)
            features.append(torch.nn.functional.normalize(total, dim=1).cpu().numpy())
    return np.concatenate(features)


def save_encoder(encoder, folder, metadata):
    """Write `encoder.pt` and `model.json` (atomic: complete or absent)."""
    import torch
    weights = os.path.join(folder, ENCODER_WEIGHTS)
    with replacing(weights) as partial:
        torch.save(encoder.state_dict(), partial)
    write_json(os.path.join(folder, MODEL_METADATA),
               dict(metadata, kind="encoder", architecture=ARCHITECTURE,
                    weights=ENCODER_WEIGHTS))
    return weights


def encoder_weights(path):
    """The weights file of an encoder given as encoder.pt or as its folder."""
    return os.path.join(path, ENCODER_WEIGHTS) if os.path.isdir(path) else path


def load_encoder(path, device=None):
    """An encoder saved by `save_encoder`: `path` is encoder.pt or its
    folder. Returns the encoder and its metadata."""
    import torch
    weights = encoder_weights(path)
    metadata = read_model_metadata(weights, "encoder")
    if metadata.get("architecture") != ARCHITECTURE:
        raise InputError("%s: encoder architecture %r, this version reads %r"
                         % (path, metadata.get("architecture"), ARCHITECTURE))
    encoder = build_encoder(metadata["feature_size"])
    try:
        encoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as error:
        raise InputError("%s: cannot read the encoder's weights (%s); the file may be "
                         "truncated: run classify2d again or copy it again"
                         % (weights, error)) from error
    return encoder.to(device).eval(), metadata
