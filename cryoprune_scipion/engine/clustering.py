"""k-means++ on L2-normalised features, in torch (GPU when given)."""
import numpy as np

from .io import InputError


def normalise(features):
    """Rows scaled to unit length, so that Euclidean k-means compares angles."""
    import torch
    features = torch.as_tensor(features, dtype=torch.float32)
    return features / features.norm(dim=1, keepdim=True).clamp(min=1e-12)


def kmeans(features, n_classes, n_init=4, iterations=100, seed=0, device=None,
           chunk=65536):
    """Cluster (n, d) features into `n_classes` with k-means++ seeding and
    Lloyd iterations; the best of `n_init` runs (lowest inertia) is kept.

    Returns labels 1..K with class 1 the largest, and the (K, d) centres in
    that order.
    """
    import torch
    n = len(features)
    if n_classes < 1:
        raise InputError("the number of classes must be at least 1, found %d" % n_classes)
    if n_classes > n:
        raise InputError("%d classes asked for but there are only %d particles; ask for "
                         "at most %d classes" % (n_classes, n, n))
    x = normalise(features).to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    best = None
    for _ in range(max(1, n_init)):
        centres = _seed_plus_plus(x, n_classes, generator, chunk)
        labels, inertia = _lloyd(x, centres, iterations, chunk)
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia)
    labels, centres, _ = best
    return _sort_by_size(labels.cpu().numpy(), _centres(x, labels, n_classes).cpu().numpy())


def _distances(x, centres, chunk):
    """Squared distances (n, K), computed in chunks of rows."""
    import torch
    return torch.cat([torch.cdist(x[i:i + chunk], centres) ** 2
                      for i in range(0, len(x), chunk)])


def _seed_plus_plus(x, k, generator, chunk):
    """k-means++: each new centre drawn with probability proportional to the
    squared distance to the nearest centre already chosen."""
    import torch
    first = torch.randint(len(x), (1,), generator=generator).item()
    centres = [x[first]]
    nearest = _distances(x, x[first][None], chunk)[:, 0]
    for _ in range(1, k):
        weights = nearest.clamp(min=0).cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than classes
            index = torch.randint(len(x), (1,), generator=generator).item()
        else:
            index = torch.multinomial(weights, 1, generator=generator).item()
        centres.append(x[index])
        nearest = torch.minimum(nearest, _distances(x, x[index][None], chunk)[:, 0])
    return torch.stack(centres)


def _centres(x, labels, k):
    import torch
    sums = torch.zeros(k, x.shape[1], device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).clamp(min=1).to(x.dtype)
    return sums / counts[:, None]


def _lloyd(x, centres, iterations, chunk):
    import torch
    labels = None
    for _ in range(iterations):
        distances = _distances(x, centres, chunk)
        new_labels = distances.argmin(dim=1)
        empty = torch.bincount(new_labels, minlength=len(centres)) == 0
        for k in torch.nonzero(empty).flatten():
            # An empty class takes the point farthest from its centre.
            farthest = distances.gather(1, new_labels[:, None])[:, 0].argmax()
            new_labels[farthest] = k
            distances[farthest] = 0
        if labels is not None and torch.equal(labels, new_labels):
            break
        labels = new_labels
        centres = _centres(x, labels, len(centres))
    inertia = float(_distances(x, centres, chunk).gather(1, labels[:, None]).sum())
    return labels, inertia


def _sort_by_size(labels, centres):
    """Renumber classes 1..K from the largest to the smallest."""
    sizes = np.bincount(labels, minlength=len(centres))
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels] + 1, centres[order]
