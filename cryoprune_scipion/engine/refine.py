"""Refinement of 2D classes after the contrastive start: multi-reference
alignment in Fourier space, as RELION's and Xmipp's 2D classification do.

Each pass aligns every particle to every class average (an exhaustive search
over in-plane rotations on a grid and all shifts within a window: the
references are rotated once per pass, and one FFT cross-correlation per
particle and rotated reference gives the correlation at every shift),
reassigns it to the best match (hard) or weighs it over the classes with
maximum-likelihood posteriors (soft), and recomputes the averages, centred
on the box (`centred`). Classes that end empty or tiny are reseeded by
splitting the largest class in two along the first principal component of
its aligned members (CL2D). Two classes whose averages correlate above
`duplicate_correlation` after alignment hold one view: they are merged and
the freed class splits the largest class, which likely holds two views.
The correlation is first divided by sqrt(R_a R_b) (`duplicate_noise`), R
the reliability of each average from the correlation of its even and odd
members' averages (Spearman-Brown): two averages of one view correlate well
below 1 when their classes are small or the SNR low, and the correction
brings them near 1 whatever the noise. The passes stop when fewer than
`tolerance` of the particles change class. When the last pass still merges
or reseeds a class, up to `cleanup_passes` more passes follow, so that the
final classes are averaged after the last change and no view is left split
in two.

The search runs on the working stack Fourier-cropped to `search_size`
pixels (a low-pass: at low SNR the classes differ at low resolution), batch
by batch, so memory holds a batch and the averages, not the stack. Angles and
shifts follow the convention of `alignment.py`.
"""
import dataclasses
import logging
import time

import numpy as np

from . import alignment
from .contrastive import read_batch, soft_mask
from .io import InputError
from .windows import fourier_crop

logger = logging.getLogger(__name__)

MODES = ("hard", "soft")
SMALLEST_SPLIT = 4  # members a class needs to be split in two


@dataclasses.dataclass
class RefinementSettings:
    passes: int = 12              # 0: no refinement, the clustering's classes as they are
    mode: str = "hard"            # "hard": best class; "soft": ML-style posterior weights
    angle_step: float = 6.0       # degrees of the rotation grid
    max_shift: float = 0.1        # largest shift searched, fraction of the box
    search_size: int = 32         # px: the working stack Fourier-cropped for the search
    min_class_fraction: float = 0.2  # a class below this fraction of n / K is reseeded
    tolerance: float = 0.005      # stop when fewer than this fraction changed class
    duplicate_correlation: float = 0.95  # two averages correlating above this are merged
    # the correlation divided by sqrt(R_a R_b), the averages' half-set reliabilities (False:
    # the test of the earlier rows; benchmarks/classification/duplicate_test.py)
    duplicate_noise: bool = True
    # passes after `passes` while the last one merged or reseeded (0: the earlier rows)
    cleanup_passes: int = 2
    batch: int = 64               # particles per search batch

    def check(self):
        if self.mode not in MODES:
            raise InputError("refinement mode %r: use one of %s" % (self.mode, ", ".join(MODES)))
        if not 0 < self.angle_step <= 90:
            raise InputError("refinement angle step %g: use 1 to 90 degrees" % self.angle_step)
        if not 8 <= self.search_size <= 512:
            raise InputError("refinement search size %d: use 8 to 512 px (16 to 64 is "
                             "typical)" % self.search_size)


@dataclasses.dataclass
class Refined:
    labels: np.ndarray        # (n,) 1..K
    angles: np.ndarray        # (n,) degrees
    shifts: np.ndarray        # (n, 2) working-size pixels
    correlations: np.ndarray  # (n,) correlation with the own class average at the search size
    averages: np.ndarray      # (K, size, size) at the working size
    history: list = dataclasses.field(default_factory=list)  # per pass: dicts


# ------------------------------------------------------------------ helpers

def _normalise(images, mask):
    """Zero mean inside the mask, zero outside, unit norm."""
    images = images * mask
    count = mask.sum()
    images = (images - (images.sum(dim=(-2, -1), keepdim=True) / count)) * mask
    return images / images.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]


class Search:
    """The references of one pass, rotated and Fourier-transformed once,
    against which batches of particles are searched."""

    def __init__(self, references, angle_step, max_shift_px, device=None):
        import torch
        self.k, self.size = references.shape[0], references.shape[-1]
        self.angles = torch.arange(0, 360, angle_step, dtype=torch.float32, device=device)
        self.m = len(self.angles)
        self.mask = soft_mask(self.size, device)
        rotated = alignment.transform(
            references.repeat_interleave(self.m, 0), self.angles.repeat(self.k),
            torch.zeros(self.k * self.m, 2, device=device))
        self.spectra = torch.fft.rfft2(_normalise(rotated, self.mask)).conj()
        reach = int(max(1, min(np.ceil(max_shift_px), self.size // 2 - 1)))
        self.offsets = torch.arange(-reach, reach + 1, device=device)
        self.window = len(self.offsets)
        # The cross-correlation at the shifts of the window only, as two small
        # inverse DFTs (matrix products, five times faster than a full
        # inverse FFT): rows fy = 0..s-1, columns fx = 0..s/2 of the half
        # spectrum, those that stand for two conjugate columns counted twice.
        size = self.size
        fx = torch.arange(size // 2 + 1, device=device, dtype=torch.float32)
        twice = torch.where((fx == 0) | (2 * fx == size), 1.0, 2.0)
        fy = torch.fft.fftfreq(size, device=device) * size
        t = self.offsets.to(torch.float32)
        self.columns = (torch.exp(2j * np.pi * fx[:, None] * t[None] / size)
                        * twice[:, None] / size ** 2).to(torch.complex64)
        self.rows = torch.exp(2j * np.pi * t[:, None] * fy[None] / size).to(torch.complex64)

    def correlations(self, particles):
        """(b, K, M, W, W) correlations of each particle with each rotated
        reference at each shift of the window (shift y, then x)."""
        import torch
        spectra = torch.fft.rfft2(_normalise(particles, self.mask))
        surface = (self.rows @ ((spectra[:, None] * self.spectra[None]) @ self.columns)).real
        return surface.reshape(len(particles), self.k, self.m, self.window, self.window)

    def best(self, scores):
        """Best rotation and shift within each class: angles (b, K) in
        degrees, shifts (b, K, 2) in search pixels (sub-pixel by a parabola)
        and the correlation (b, K)."""
        import torch
        b, k, m, w, _ = scores.shape
        flat = scores.reshape(b, k, -1)
        value, index = flat.max(dim=-1)
        angle_index = index // (w * w)
        row, col = (index % (w * w)) // w, index % w
        gathered = scores.reshape(b * k, m, w, w)
        i = torch.arange(b * k, device=scores.device)
        a, r, c = angle_index.flatten(), row.flatten(), col.flatten()

        def at(rr, cc):
            return gathered[i, a, rr.clamp(0, w - 1), cc.clamp(0, w - 1)]
        centre = gathered[i, a, r, c]
        dy = _parabola(at(r - 1, c), centre, at(r + 1, c))
        dx = _parabola(at(r, c - 1), centre, at(r, c + 1))
        step = float(self.angles[1] - self.angles[0]) if m > 1 else 0.0
        left = gathered[i, (a - 1) % m, r, c]
        right = gathered[i, (a + 1) % m, r, c]
        da = _parabola(left, centre, right)
        angles = (self.angles[a] + da * step).reshape(b, k) % 360
        shifts = torch.stack([self.offsets[c] + dx, self.offsets[r] + dy], -1).reshape(b, k, 2)
        return angles, shifts, value


def _parabola(left, centre, right):
    import torch
    curvature = left - 2 * centre + right
    return torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-12),
                       torch.zeros_like(centre)).clamp(-0.5, 0.5)


def _read(working, indices, device):
    import torch
    return torch.as_tensor(read_batch(working, indices), dtype=torch.float32, device=device)


# --------------------------------------------------------------- refinement

def refine(working, labels, n_classes, settings, device=None, references=None, seed=0):
    """Refine the classes `labels` (1..K, 0 for none) of the working stack
    (n, size, size). Starts from a seed average per class (its first 200
    members aligned to the first of them: particles of one contrastive class
    share their view, not their in-plane angle), or from `references`
    (K, size, size) when given. Returns a `Refined`."""
    import torch
    settings.check()
    n, size = len(working), working.shape[-1]
    s = min(settings.search_size, size)
    scale = size / s
    labels = np.asarray(labels).copy()
    rng = np.random.default_rng(seed)
    if references is None:
        references = _seed_references(working, labels, n_classes, device)
    references = torch.as_tensor(references, dtype=torch.float32, device=device)
    angles, shifts = np.zeros(n), np.zeros((n, 2))
    correlations = np.zeros(n)
    history = []
    beta = None
    scheduled = max(1, settings.passes)
    limit = scheduled + settings.cleanup_passes  # no merge or reseed after the very last
    for number in range(1, limit + 1):
        start = time.time()
        search = Search(fourier_crop(references, s), settings.angle_step,
                        settings.max_shift * s, device)
        sums = torch.zeros(n_classes, size, size, device=device)
        halves = torch.zeros(2, n_classes, size, size, device=device)  # even, odd members
        totals = torch.zeros(n_classes, device=device)
        new_labels = np.zeros(n, dtype=int)
        # O(batch) memory: the correlation surfaces of a batch stay near 2^24 values.
        batch = max(1, min(settings.batch, 2 ** 24 // (n_classes * search.m * s * s)))
        for first in range(0, n, batch):
            index = np.arange(first, min(first + batch, n))
            images = _read(working, index, device)
            odd = torch.as_tensor(index % 2 == 1, device=images.device)
            scores = search.correlations(fourier_crop(images, s))
            best_angles, best_shifts, best = search.best(scores)
            if settings.mode == "soft" and beta is not None:
                # Maximum-likelihood 2D: log p(X | k, pose) = beta * correlation
                # + const, marginalised over poses, flat prior over classes.
                flat = (beta * scores).flatten(2)
                weights = torch.softmax(torch.logsumexp(flat, dim=-1), dim=-1)
            else:
                weights = torch.nn.functional.one_hot(best.argmax(dim=1), n_classes).float()
            choice = weights.argmax(dim=1)
            rows = torch.arange(len(index), device=images.device)
            new_labels[index] = choice.cpu().numpy() + 1
            angles[index] = best_angles[rows, choice].cpu().numpy()
            shifts[index] = best_shifts[rows, choice].cpu().numpy() * scale
            correlations[index] = best[rows, choice].cpu().numpy()
            for k in torch.nonzero(weights.sum(0) > 0).flatten().tolist():
                take = weights[:, k] > 1e-3
                if not take.any():
                    continue
                w = weights[take, k]
                aligned = alignment.untransform(images[take], best_angles[take, k],
                                                best_shifts[take, k] * scale)
                weighted = aligned * w[:, None, None]
                sums[k] += weighted.sum(0)
                halves[0, k] += weighted[~odd[take]].sum(0)
                halves[1, k] += weighted[odd[take]].sum(0)
                totals[k] += w.sum()
        changed = float(np.mean(new_labels != labels))
        labels = new_labels
        mean_correlation = float(correlations.mean())
        if settings.mode == "soft":
            # Signal amplitude a ~ mean correlation, noise 1 - a^2 per unit
            # variance, over the independent pixels of the masked image.
            a = float(np.clip(mean_correlation, 1e-3, 0.9))
            beta = float(search.mask.sum()) * a / (1 - a * a)
        references = centred(torch.where(totals[:, None, None] > 0,
                                          sums / totals.clamp(min=1e-12)[:, None, None],
                                          references), s)
        sizes = np.bincount(labels, minlength=n_classes + 1)[1:]
        reseeded, merged = [], []
        if number < limit:
            references, labels, merged = _merge_duplicates(
                working, labels, angles, shifts, references, half_set_reliability(halves, s),
                settings, device, rng)
            references, labels, reseeded = _reseed(working, labels, angles, shifts, references,
                                                   settings, device, rng)
        seconds = time.time() - start
        history.append({"pass": number, "changed": changed, "mean_correlation": mean_correlation,
                        "seconds": seconds, "reseeded": reseeded, "merged": merged,
                        "sizes": sizes.tolist()})
        logger.info("refinement %s: %.1f %% of the particles changed class, mean "
                    "correlation %.3f, %.1f s%s%s",
                    "pass %d/%d" % (number, scheduled) if number <= scheduled
                    else "clean-up pass %d (the pass before changed classes)" % number,
                    100 * changed,
                    mean_correlation, seconds,
                    ", reseeded classes %s" % reseeded if reseeded else "",
                    "".join(", classes %d and %d hold one view: merged, class %d split into "
                            "%d" % (kept, freed, split, freed) for kept, freed, split in merged))
        if reseeded or merged:
            continue
        if changed < settings.tolerance and number > 1:
            logger.info("refinement: assignments settled after %d passes", number)
            break
        if number >= scheduled:
            break
    return Refined(labels, angles % 360, shifts, correlations, references.cpu().numpy(), history)


def centred(references, search_size):
    """Each average shifted so that its centre of mass (of the squared
    average, low-passed to the search size) lies at the box centre. Without
    it an average drifts a little with every pass and its members' shifts
    with it, until they reach the search's limit and the classes fall apart
    (measured: BENCHMARKS.md, "Centred averages"); RELION centres its
    class averages too."""
    import torch
    size = references.shape[-1]
    energy = fourier_crop(references, search_size) ** 2
    # pixel i of the Fourier crop samples pixel i * size / search_size of the average
    axis = torch.arange(search_size, dtype=energy.dtype, device=energy.device) \
        * (size / search_size) - (size - 1) / 2
    total = energy.sum(dim=(-2, -1)).clamp(min=1e-12)
    centre = torch.stack([(energy.sum(-2) * axis).sum(-1), (energy.sum(-1) * axis).sum(-1)],
                         -1) / total[:, None]
    return alignment.transform(references, torch.zeros(len(references), device=energy.device),
                               -centre)


def _seed_references(working, labels, n_classes, device):
    """Each class's seed: the average of its first members aligned to the
    first of them (a few rounds of `alignment.class_average`)."""
    references = []
    size = working.shape[-1]
    for k in range(1, n_classes + 1):
        members = np.flatnonzero(labels == k)
        if len(members) == 0:
            references.append(np.zeros((size, size), dtype=np.float32))
            continue
        members = members[:200]
        average, _ = alignment.class_average(
            lambda idx: _read(working, idx, device).cpu().numpy(), members,
            np.asarray(working[members[0]]), 2, device=device)
        references.append(average)
    return np.stack(references)


def _reseed(working, labels, angles, shifts, references, settings, device, rng):
    """CL2D: each empty or tiny class takes half of the largest class."""
    n_classes = len(references)
    limit = settings.min_class_fraction * len(labels) / n_classes
    reseeded = []
    for _ in range(n_classes):
        sizes = np.bincount(labels, minlength=n_classes + 1)[1:]
        tiny = int(np.argmin(sizes))
        largest = int(np.argmax(sizes))
        if sizes[tiny] >= limit or sizes[largest] < SMALLEST_SPLIT or tiny == largest:
            break
        labels[labels == tiny + 1] = largest + 1
        _split(working, labels, angles, shifts, references, largest, tiny, settings, device,
               rng)
        reseeded.append(tiny + 1)
    return references, labels, reseeded


def _split(working, labels, angles, shifts, references, source, target, settings, device,
           rng, sample=1000):
    """Split class `source` (0-based) in two along the first principal
    component of its aligned members (a sample of them for the split
    direction); one side moves to class `target`. Both references become the
    averages of their sides."""
    import torch
    members = np.flatnonzero(labels == source + 1)
    if len(members) > sample:
        members = np.sort(rng.choice(members, sample, replace=False))
    images = _read(working, members, device)
    aligned = alignment.untransform(
        images, torch.as_tensor(angles[members], dtype=torch.float32, device=device),
        torch.as_tensor(shifts[members], dtype=torch.float32, device=device))
    small = fourier_crop(aligned, min(settings.search_size, aligned.shape[-1]))
    flat = small.flatten(1)
    flat = flat - flat.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    side = (flat @ v[0]) > 0
    if side.all() or not side.any():
        side = torch.arange(len(members), device=flat.device) % 2 == 0
    references[source] = aligned[side].mean(0)
    references[target] = aligned[~side].mean(0)
    labels[members[~side.cpu().numpy()]] = target + 1


def average_similarity(references, settings, device=None):
    """(K, K) correlation of every pair of class averages at their best
    in-plane rotation and shift (the search of a pass, at the search size)."""
    s = min(settings.search_size, references.shape[-1])
    small = fourier_crop(references, s)
    search = Search(small, settings.angle_step, settings.max_shift * s, device)
    similarity = search.correlations(small).flatten(2).max(dim=-1).values.cpu().numpy()
    return (similarity + similarity.T) / 2


def half_set_reliability(halves, size):
    """(K,) reliability of each class average from its half-set sums
    `halves` (2, K, n, n): the correlation c of the two halves' averages under
    the soft mask at `size` px, stepped up to the full set (Spearman-Brown,
    2 c / (1 + c)): the correlation two independent averages of one view
    with this noise would have."""
    small = fourier_crop(halves.flatten(0, 1), size)
    small = _normalise(small, soft_mask(size, small.device)).reshape(2, -1, size * size)
    c = (small[0] * small[1]).sum(-1).clamp(min=0).cpu().numpy()
    return 2 * c / (1 + c)


def duplicate_similarity(references, reliability, settings, device=None):
    """(K, K) aligned correlation of the averages (`average_similarity`),
    with `settings.duplicate_noise` divided by sqrt(R_a R_b) of the
    averages' reliabilities (Spearman's correction for attenuation): about 1
    for two averages of one view, however noisy."""
    similarity = average_similarity(references, settings, device)
    if settings.duplicate_noise:
        r = np.sqrt(np.clip(reliability, 1e-3, 1))
        similarity = similarity / np.outer(r, r)
    return similarity


def _merge_duplicates(working, labels, angles, shifts, references, reliability, settings,
                      device, rng):
    """Two classes whose averages match after alignment hold one view (the
    view is split between them, so another class holds two): merge them, and
    the freed class takes half of the largest class (as CL2D reseeds; the
    members' mean correlation is no guide: it follows the view's contrast).
    Returns (references, labels, [(kept, freed, split), ...])."""
    n_classes = len(references)
    similarity = np.triu(duplicate_similarity(references, reliability, settings, device), 1)
    merged = []
    while similarity.max() >= settings.duplicate_correlation:
        kept, freed = (int(k) for k in np.unravel_index(np.argmax(similarity), similarity.shape))
        sizes = np.bincount(labels, minlength=n_classes + 1)[1:]
        sizes[[kept, freed] + [split - 1 for _, _, split in merged]] = 0
        largest = int(np.argmax(sizes))
        if sizes[largest] < SMALLEST_SPLIT:
            break
        labels[labels == freed + 1] = kept + 1
        _split(working, labels, angles, shifts, references, largest, freed, settings, device,
               rng)
        similarity[[kept, freed, largest]] = similarity[:, [kept, freed, largest]] = 0
        merged.append((kept + 1, freed + 1, largest + 1))
    return references, labels, merged


def refine_classification(working, stacks, labels, features, settings, device=None, ctf=None):
    """`refine` from the clustering's classes, then the class averages at the
    particles' own size with the refined alignments (what `classify` runs
    when `settings.refinement.passes` > 0). Returns a Classification (classes
    in the refinement's order: `ranking.rank_classes` numbers them)."""
    from .classify2d import Classification, _average_full_size
    k = settings.n_classes
    refined = refine(working, labels, k, settings.refinement, device,
                     seed=settings.training.seed)
    labels = refined.labels
    box, size = stacks[0].shape[-1], working.shape[-1]
    shifts = refined.shifts * (box / size)
    weights = np.clip(refined.correlations, 0, None)
    averages = _average_full_size(stacks, labels, refined.angles, shifts, weights, k, device,
                                  ctf)
    result = Classification(labels, refined.angles, shifts, weights, averages, features)
    result.refinement = refined.history
    return result
