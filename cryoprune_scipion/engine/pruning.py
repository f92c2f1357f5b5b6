"""PickerOptimizer: a CNN that tells particle windows from junk (Li et al.,
J Comput Biol 2022).

A torchvision backbone (ResNet-18 by default) sees each window resized to
the network input and repeated to 3 channels after per-window
normalisation. A second branch on the last feature map (a 1 x 1 convolution
halving the channels, pooling, its own classifier) adds its weighted loss to
the main loss, so both losses update the shared network (the multi-loss of
the paper). Class 0 is always "particle"; the others are junk classes.

Initial weights come from a local file only: ImageNet weights of the
backbone, or a model trained earlier by this module; or from scratch.
Torch is imported inside functions so that importing this module is cheap.
"""
import dataclasses
import json
import logging
import os

import numpy as np

from ..constants import MODEL_METADATA, MODEL_WEIGHTS
from .dihedral import dihedral_copies, dihedral_copy
from .io import InputError, replacing, write_json
from .training_state import EpochLog, fingerprint, load_state, save_state

logger = logging.getLogger(__name__)

PARTICLE = "particle"
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
             "mobilenet_v3_large", "efficientnet_b0", "densenet121")
CHECKPOINT_FORMAT = "cryoprune-pruner-1"
IMAGENET_INPUT_SIZE = 224  # px, the paper's network input, for ImageNet weights
# px from scratch: best of 48, 64, 96 and 224 on real beta-galactosidase
# windows (BENCHMARKS.md, "Network input size"); larger inputs trained worse
# from scratch, most with few examples, and cost more
SCRATCH_INPUT_SIZE = 64
# Test-time copies that pruning averages (and the final validation figures,
# which the threshold wizard shows): on real beta-galactosidase windows 4
# copies raised F1 by 0.019 at 50 examples per class, 8 added nothing more
# (BENCHMARKS.md, "Test-time augmentation")
TTA = 4
# Examples each class needs, the particles too: at the default validation
# fraction 2 to validate and 8 to train on. With fewer, the class's share of
# the loss (every class weighs the same) rests on a few windows that the
# network learns by heart, and its validation figures on a single window.
MIN_CLASS_EXAMPLES = 10


@dataclasses.dataclass
class TrainSettings:
    backbone: str = "resnet18"
    input_size: int = 0        # px; 0: automatic (`automatic_input_size`)
    # 20: F1 +0.014 over about 1,200 window presentations at 50 and 200
    # examples per class, 40 no better (BENCHMARKS.md, "Training recipe")
    epochs: int = 20
    learning_rate: float = 1e-3
    batch: int = 32
    val_fraction: float = 0.2
    aux_weight: float = 0.5
    few_shot: int = 0          # at most this many examples per class; 0: all
    seed: int = 0
    augment: bool = True

    def validate(self):
        if self.backbone not in BACKBONES:
            raise InputError("backbone %r unknown; choose one of %s"
                             % (self.backbone, ", ".join(BACKBONES)))
        if 0 < self.input_size < 32:
            raise InputError("input size %d is too small; use 32 px or more, or 0 for "
                             "automatic" % self.input_size)
        if self.epochs < 1 or self.batch < 1:
            raise InputError("epochs and batch size must be at least 1")
        if 0 < self.few_shot < MIN_CLASS_EXAMPLES:
            raise InputError("few-shot %d: a class needs at least %d examples; use %d or "
                             "more, or 0 for all" % (self.few_shot, MIN_CLASS_EXAMPLES,
                                                     MIN_CLASS_EXAMPLES))
        if not 0 <= self.val_fraction < 1:
            raise InputError("validation fraction must lie in [0, 1); found %g"
                             % self.val_fraction)
        if self.aux_weight < 0:
            raise InputError("auxiliary loss weight must be >= 0; found %g"
                             % self.aux_weight)


# ---------------------------------------------------------------- network

def _torchvision_model(backbone):
    import torchvision
    return torchvision.models.get_model(backbone, weights=None)


def _feature_extractor(model, backbone):
    """The convolutional part of a torchvision classifier, ending on the
    last feature map."""
    import torch.nn as nn
    if backbone.startswith("resnet"):
        return nn.Sequential(*list(model.children())[:-2])
    if backbone.startswith("densenet"):
        return nn.Sequential(model.features, nn.ReLU(inplace=True))
    return model.features


def build_network(backbone, n_classes, imagenet_state=None):
    """The two-branch classifier; `imagenet_state` is a torchvision state
    dict of the whole backbone classifier, loaded before its head is cut."""
    import torch
    import torch.nn as nn

    class PrunerNet(nn.Module):
        def __init__(self):
            super().__init__()
            model = _torchvision_model(backbone)
            if imagenet_state is not None:
                model.load_state_dict(imagenet_state)
            self.features = _feature_extractor(model, backbone)
            with torch.no_grad():
                channels = self.features.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(channels, n_classes)
            self.aux_reduce = nn.Sequential(
                nn.Conv2d(channels, channels // 2, kernel_size=1, bias=False),
                nn.BatchNorm2d(channels // 2), nn.ReLU(inplace=True))
            self.aux_head = nn.Linear(channels // 2, n_classes)

        def forward(self, x):
            fmap = self.features(x)
            main = self.head(torch.flatten(self.pool(fmap), 1))
            aux = self.aux_head(torch.flatten(self.pool(self.aux_reduce(fmap)), 1))
            return main, aux

    return PrunerNet()


@dataclasses.dataclass
class InitialWeights:
    """An initial weights file as read: `kind` "imagenet" (a torchvision
    state dict of the backbone) or "pruner" (a model of this module, with
    its `metadata`)."""
    path: str
    kind: str
    state: dict
    metadata: dict = None


def load_initial_weights(path, backbone):
    """Read an initial weights file (InitialWeights) for `backbone`."""
    state = _read_weights(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        metadata = json.loads(state["metadata"])
        if metadata["backbone"] != backbone:
            raise InputError("%s: this model uses backbone %s, not %s; choose the same "
                             "backbone to start from it" % (path, metadata["backbone"],
                                                            backbone))
        return InitialWeights(path, "pruner", state["state_dict"], metadata)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    probe = _torchvision_model(backbone).state_dict()
    if not isinstance(state, dict) or set(state) != set(probe):
        raise InputError("%s: not ImageNet weights of torchvision's %s nor a model of "
                         "this plugin; check the file or the backbone" % (path, backbone))
    return InitialWeights(path, "imagenet", state)


def automatic_input_size(initial=None):
    """The network input of input size 0 for InitialWeights `initial` (None:
    from scratch): an earlier pruner's own, the paper's IMAGENET_INPUT_SIZE
    for ImageNet weights, SCRATCH_INPUT_SIZE from scratch."""
    if initial is None:
        return SCRATCH_INPUT_SIZE
    return IMAGENET_INPUT_SIZE if initial.kind == "imagenet" else initial.metadata["input_size"]


def initial_network(settings, n_classes, initial=None):
    """A network for training: from scratch (`initial` None), from ImageNet
    weights, or from an earlier pruner whose matching layers are reused (its
    classifier too when the classes agree)."""
    if initial is None:
        return build_network(settings.backbone, n_classes)
    if initial.kind == "imagenet":
        return build_network(settings.backbone, n_classes, imagenet_state=initial.state)
    network = build_network(settings.backbone, n_classes)
    own = network.state_dict()
    usable = {k: v for k, v in initial.state.items()
              if k in own and own[k].shape == v.shape}
    network.load_state_dict(usable, strict=False)
    logger.info("Initial weights: %d of %d tensors from %s", len(usable), len(own),
                initial.path)
    return network


# ------------------------------------------------------------ input images

def finite_mask(windows):
    """True for windows without NaN or infinite pixels."""
    flat = np.asarray(windows).reshape(len(windows), -1)
    return np.isfinite(flat).all(axis=1)


def normalise(windows):
    """Per-window zero mean and unit deviation; a constant window becomes
    zeros rather than a division by zero."""
    windows = np.asarray(windows, dtype=np.float32)
    flat = windows.reshape(len(windows), -1)
    mean = flat.mean(axis=1)
    std = flat.std(axis=1)
    std[std < 1e-6] = 1.0
    return (windows - mean[:, None, None]) / std[:, None, None]


def to_network_input(windows, input_size, device):
    """Normalised (n, box, box) windows to a (n, 3, input, input) tensor."""
    import torch
    import torch.nn.functional as F
    batch = torch.from_numpy(normalise(windows)).to(device).unsqueeze(1)
    if batch.shape[-1] != input_size:
        batch = F.interpolate(batch, size=(input_size, input_size), mode="bilinear",
                              align_corners=False,
                              antialias=batch.shape[-1] > input_size)
    return batch.expand(-1, 3, -1, -1).contiguous()


def augment(batch, generator, max_shift=0.05, noise=0.3, contrast=0.2):
    """Particle-suited augmentation of a (n, c, s, s) batch: any in-plane
    rotation, mirror flips, shifts up to `max_shift` of the window, additive
    Gaussian noise and contrast jitter."""
    import torch
    import torch.nn.functional as F
    n, device = batch.shape[0], batch.device

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator).to(device)

    angle = uniform(0, 2 * np.pi, n)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * flip, -sin, uniform(-max_shift, max_shift, n)], 1),
                         torch.stack([sin * flip, cos, uniform(-max_shift, max_shift, n)], 1)], 1)
    grid = F.affine_grid(theta, batch.shape, align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    scale = uniform(1 - contrast, 1 + contrast, n, 1, 1, 1)
    sigma = uniform(0, noise, n, 1, 1, 1)
    out = out * scale + sigma * torch.randn(out.shape, generator=generator).to(device)
    return out


# --------------------------------------------------------------- training

@dataclasses.dataclass
class Dataset:
    """Labelled windows: `sources` are (n_i, box, box) arrays (memory-mapped
    stacks are fine), one per class, class 0 the particles."""
    classes: list
    sources: list

    def __post_init__(self):
        if len(self.classes) != len(self.sources):
            raise ValueError("one source per class")
        if len(set(self.classes)) != len(self.classes):
            raise InputError("class names must differ; found %s" % self.classes)
        if self.classes[0] != PARTICLE:
            raise InputError("the first class must be %r" % PARTICLE)
        if len(self.classes) < 2:
            raise InputError("only one class given: add bad examples (junk windows) "
                             "to train the pruner")
        boxes = {s.shape[-1] for s in self.sources if len(s)}
        for name, source in zip(self.classes, self.sources):
            if source.ndim != 3 or source.shape[1] != source.shape[2]:
                raise InputError("class %r: windows must be square, found shape %s"
                                 % (name, source.shape[1:]))
        if len(boxes) > 1:
            raise InputError("the classes have different box sizes %s; extract all "
                             "windows at the same box size" % sorted(boxes))
        for name, source in zip(self.classes, self.sources):
            if len(source) < MIN_CLASS_EXAMPLES:
                found = "only %d examples" % len(source) if len(source) else "no examples"
                raise InputError("class %r has %s; each class, the particles too, needs "
                                 "at least %d example windows: add examples to its set"
                                 % (name, found, MIN_CLASS_EXAMPLES))

    @property
    def box_size(self):
        return int(self.sources[0].shape[-1])


def _select(dataset, settings, rng):
    """Training and validation (class, index) lists: a random subset of at
    most `few_shot` examples per class, split per class."""
    train, val = [], []
    for label, source in enumerate(dataset.sources):
        indices = rng.permutation(len(source))
        if settings.few_shot:
            indices = indices[:settings.few_shot]
        indices = np.sort(indices)
        windows = np.asarray(source[indices]) if len(indices) else source[:0]
        bad = ~finite_mask(windows)
        if bad.any():
            raise InputError("class %r: windows %s hold NaN or infinite values; "
                             "remove them from the input set"
                             % (dataset.classes[label], indices[bad][:10].tolist()))
        n_val = int(round(settings.val_fraction * len(indices)))
        if settings.val_fraction > 0 and len(indices) >= 2:
            n_val = min(max(n_val, 1), len(indices) - 1)
        else:
            n_val = 0
        order = rng.permutation(len(indices))
        val += [(label, windows[i]) for i in order[:n_val]]
        train += [(label, windows[i]) for i in order[n_val:]]
    return train, val


def _stack(items):
    labels = np.array([label for label, _ in items], dtype=np.int64)
    windows = np.stack([w for _, w in items]).astype(np.float32) if items else None
    return windows, labels


def train(dataset, settings, device="cpu", initial_weights=None, log=logger.info,
          checkpoint=None, resume=False):
    """Train a pruner; returns (network, metadata) with the validation
    metrics in metadata["validation"] and the training history.

    `checkpoint`: a file where the training state is saved after every
    epoch; with `resume`, training continues from the state saved there by
    an interrupted run of the same settings and data (from the start when
    there is none)."""
    import torch
    settings.validate()
    initial = (load_initial_weights(initial_weights, settings.backbone) if initial_weights
               else None)
    if not settings.input_size:
        settings = dataclasses.replace(settings, input_size=automatic_input_size(initial))
        log("network input: %d px (automatic)" % settings.input_size)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    train_items, val_items = _select(dataset, settings, rng)
    x_train, y_train = _stack(train_items)
    x_val, y_val = _stack(val_items)
    n_classes = len(dataset.classes)
    counts = np.bincount(y_train, minlength=n_classes)
    if (counts == 0).any():
        raise InputError("after the validation split, classes %s have no training "
                         "examples; give more examples or a smaller validation fraction"
                         % [c for c, k in zip(dataset.classes, counts) if k == 0])
    # Inverse-frequency weights: every class counts as much in the loss.
    weights = torch.tensor(len(y_train) / (n_classes * counts), dtype=torch.float32,
                           device=device)
    run = {"settings": dataclasses.asdict(settings), "classes": list(dataset.classes),
           "initial_weights": os.path.abspath(initial_weights) if initial_weights else "",
           "windows": fingerprint(x_train, y_train, *([x_val, y_val] if len(y_val) else []))}
    state = load_state(checkpoint, run) if checkpoint and resume else None
    network = initial_network(settings, n_classes, None if state else initial).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate,
                                  weight_decay=1e-4)
    steps = settings.epochs * int(np.ceil(len(y_train) / settings.batch))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.learning_rate,
                                                    total_steps=steps, pct_start=0.15)
    history, best = [], None  # best: val_loss, epoch and network of the best epoch
    if state:
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        history, best = state["history"], state["best"]
        log("resuming from %s: %d of %d epochs done" % (checkpoint, state["epoch"],
                                                         settings.epochs))
    progress = EpochLog(settings.epochs, log)
    for epoch in range(len(history) + 1, settings.epochs + 1):
        record = {"epoch": epoch, "train_loss": _train_epoch(
            network, optimizer, scheduler, x_train, y_train, weights, settings, rng,
            generator, device)}
        if x_val is not None:
            probabilities = predict_probabilities(network, x_val, settings.input_size,
                                                  device, settings.batch)
            record.update(validation_loss(probabilities, y_val))
            if best is None or record["val_loss"] <= best["val_loss"]:
                best = {"val_loss": record["val_loss"], "epoch": epoch, "network": {
                    k: v.detach().clone() for k, v in network.state_dict().items()}}
        history.append(record)
        if checkpoint:
            save_state(checkpoint, {
                "run": run, "epoch": epoch, "network": network.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng.bit_generator.state, "generator": generator.get_state(),
                "history": history, "best": best})
        progress.done(epoch, {k: v for k, v in record.items() if k != "epoch"})
    if best is not None:
        network.load_state_dict(best["network"])
    metadata = {"kind": "pruner", "classes": list(dataset.classes),
                "box_size": dataset.box_size,
                "backbone": settings.backbone, "input_size": settings.input_size,
                "settings": dataclasses.asdict(settings), "history": history,
                "initial_weights": run["initial_weights"],
                "n_train": counts.tolist(),
                "best_epoch": best["epoch"] if best else settings.epochs}
    if x_val is not None:
        probabilities = predict_probabilities(network, x_val, settings.input_size,
                                              device, settings.batch, TTA)
        metadata["validation"] = dict(classification_metrics(probabilities, y_val,
                                                             dataset.classes),
                                      test_time_copies=TTA)
        # Kept so that the pruning threshold can be chosen on them before pruning
        metadata["validation_windows"] = {
            "particle_probability": np.round(probabilities[:, 0], 4).tolist(),
            "class_index": y_val.tolist()}
    return network.eval(), metadata


def _train_epoch(network, optimizer, scheduler, x_train, y_train, weights, settings, rng,
                 generator, device):
    """One pass over the training windows in random order; returns the mean
    loss."""
    import torch
    import torch.nn.functional as F
    network.train()
    order = rng.permutation(len(y_train))
    total, seen = 0.0, 0
    for start in range(0, len(order), settings.batch):
        chosen = order[start:start + settings.batch]
        if len(chosen) < 2 and len(order) > 1:
            continue  # batch norm needs two windows
        batch = to_network_input(x_train[chosen], settings.input_size, device)
        if settings.augment:
            batch = augment(batch, generator)
        target = torch.from_numpy(y_train[chosen]).to(device)
        main, aux = network(batch)
        loss = F.cross_entropy(main, target, weight=weights)
        if settings.aux_weight > 0:
            loss = loss + settings.aux_weight * F.cross_entropy(aux, target, weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(chosen)
        seen += len(chosen)
    return total / max(seen, 1)


def validation_loss(probabilities, labels):
    picked = probabilities[np.arange(len(labels)), labels]
    return {"val_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1)))),
            "val_accuracy": float(np.mean(probabilities.argmax(1) == labels))}


# ------------------------------------------------------------- prediction

def predict_probabilities(network, windows, input_size, device="cpu", batch=256,
                          copies=1):
    """Class probabilities (n, n_classes) of windows (n, box, box), batch by
    batch so that a memory-mapped stack is read a slice at a time; with
    `copies` > 1 (of TTA_COPIES), their mean over that many turned and
    mirrored copies of each window (test-time augmentation)."""
    import torch
    network.eval()
    n_classes = network.head.out_features
    out = np.empty((len(windows), n_classes), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            chunk = np.asarray(windows[start:start + batch], dtype=np.float32)
            images = to_network_input(chunk, input_size, device)
            mean = sum(torch.softmax(network(dihedral_copy(images, turns, mirror))[0], 1)
                       for turns, mirror in dihedral_copies(copies)) / copies
            out[start:start + len(chunk)] = mean.cpu().numpy()
    return out


def iter_predictions(network, metadata, stack, device="cpu", batch=256, copies=1):
    """(first index, particle scores, labels) per batch of a (memory-mapped)
    stack, averaged over `copies` test-time copies. Windows with NaN or
    infinite pixels score 0 and take the first junk class; they are logged
    by index."""
    classes = metadata["classes"]
    for start in range(0, len(stack), batch):
        chunk = np.asarray(stack[start:start + batch], dtype=np.float32)
        good = finite_mask(chunk)
        probabilities = np.zeros((len(chunk), len(classes)), dtype=np.float32)
        probabilities[~good, 1] = 1.0
        if (~good).any():
            logger.warning("windows %s hold NaN or infinite values: scored 0",
                           (start + np.flatnonzero(~good)).tolist())
        if good.any():
            probabilities[good] = predict_probabilities(network, chunk[good],
                                                        metadata["input_size"], device, batch,
                                                        copies)
        labels = [classes[k] for k in probabilities.argmax(1)]
        yield start, probabilities[:, 0], labels


def check_box_size(metadata, box, resample, item):
    """Refuse windows of another box size than the model's unless told that
    they cover the same field of view at another sampling."""
    if box != metadata["box_size"] and not resample:
        raise InputError("%s: windows of %d px, but the model was trained on %d px "
                         "windows; extract at %d px, or resample if the field of view "
                         "is the same at another sampling"
                         % (item, box, metadata["box_size"], metadata["box_size"]))


# ---------------------------------------------------------------- metrics

def classification_metrics(probabilities, labels, classes):
    """Particle-vs-junk accuracy, precision, recall, F1 and ROC AUC of the
    particle probability, with the confusion matrix over all classes (rows:
    true class, columns: predicted)."""
    predicted = probabilities.argmax(1)
    truth = labels == 0
    called = predicted == 0
    metrics = binary_metrics(truth, called, probabilities[:, 0])
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    metrics["class_accuracy"] = float(np.mean(predicted == labels))
    metrics["classes"] = list(classes)
    metrics["confusion"] = confusion.tolist()
    return metrics


def binary_metrics(truth, called, scores):
    truth, called = np.asarray(truth, bool), np.asarray(called, bool)
    tp = int(np.sum(truth & called))
    fp = int(np.sum(~truth & called))
    fn = int(np.sum(truth & ~called))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": int(len(truth)), "accuracy": float(np.mean(truth == called)),
            "precision": precision, "recall": recall, "f1": f1,
            "roc_auc": roc_auc(truth, scores)}


def roc_auc(truth, scores):
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted
    half); NaN when one side is empty."""
    from scipy.stats import rankdata
    truth = np.asarray(truth, bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------- storage

def save(network, metadata, out_dir):
    """Write the weights (with their metadata inside) and `model.json`, each
    completely or not at all."""
    import torch
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, MODEL_WEIGHTS)
    checkpoint = {"format": CHECKPOINT_FORMAT, "metadata": json.dumps(metadata),
                  "state_dict": {k: v.cpu() for k, v in network.state_dict().items()}}
    with replacing(weights) as partial:
        torch.save(checkpoint, partial)
    write_json(os.path.join(out_dir, MODEL_METADATA), metadata)
    return weights


def load(path, device="cpu"):
    """A saved pruner: (network in eval mode, metadata)."""
    checkpoint = _read_weights(path)
    if not (isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT):
        raise InputError("%s: not a pruner trained by this plugin; train one first "
                         "(backbone weights alone cannot prune)" % path)
    metadata = json.loads(checkpoint["metadata"])
    network = build_network(metadata["backbone"], len(metadata["classes"]))
    network.load_state_dict(checkpoint["state_dict"])
    return network.to(device).eval(), metadata


def _read_weights(path):
    import torch
    if not os.path.isfile(path):
        raise InputError("%s: weights file not found; check the path" % path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError("%s: cannot read the weights (%s)" % (path, error)) from error
