"""Figures of merit with a known answer: picks against labelled centres."""
import dataclasses

import numpy as np
from scipy.spatial import cKDTree


@dataclasses.dataclass
class PickingScore:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self):
        picked = self.true_positives + self.false_positives
        return self.true_positives / picked if picked else 0.0

    @property
    def recall(self):
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 0.0

    @property
    def f1(self):
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @classmethod
    def from_matches(cls, matched, labelled):
        """The score of picks `matched` (bool, True for a pick of a label)
        against `labelled` labels."""
        found = int(np.count_nonzero(matched))
        return cls(found, len(matched) - found, labelled - found)

    def __add__(self, other):
        return PickingScore(self.true_positives + other.true_positives,
                            self.false_positives + other.false_positives,
                            self.false_negatives + other.false_negatives)

    def as_dict(self):
        return {"tp": self.true_positives, "fp": self.false_positives,
                "fn": self.false_negatives, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def match_picks(picks, labels, radius, scores=None):
    """Greedy matching by descending score: a pick is a true positive when its
    centre lies within `radius` of a still unmatched label.

    picks, labels: (n, 2) arrays of x, y. Returns a boolean array, True for
    each pick that matched, in the order of `picks`.
    """
    return assign_picks(picks, labels, radius, scores) >= 0


def assign_picks(picks, labels, radius, scores=None):
    """The matching of `match_picks` as the index of the label each pick
    matched, -1 for a pick that matched none."""
    picks = np.asarray(picks, dtype=float).reshape(-1, 2)
    labels = np.asarray(labels, dtype=float).reshape(-1, 2)
    assigned = np.full(len(picks), -1)
    if not len(picks) or not len(labels):
        return assigned
    order = np.argsort(-np.asarray(scores)) if scores is not None else np.arange(len(picks))
    tree = cKDTree(labels)
    taken = np.zeros(len(labels), dtype=bool)
    for i in order:
        free = [k for k in tree.query_ball_point(picks[i], radius) if not taken[k]]
        if free:
            nearest = min(free, key=lambda k: np.hypot(*(labels[k] - picks[i])))
            taken[nearest] = True
            assigned[i] = nearest
    return assigned


def score_picks(picks, labels, radius, scores=None):
    return PickingScore.from_matches(match_picks(picks, labels, radius, scores),
                                     len(np.asarray(labels).reshape(-1, 2)))


def precision_recall_curve(matched, scores, n_labels):
    """Precision and recall of the picks scoring at least each score, and
    those scores, in descending order; `matched` from `match_picks`, pooled
    over micrographs."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    true_positives = np.cumsum(np.asarray(matched, dtype=float)[order])
    precision = true_positives / np.arange(1, len(order) + 1)
    recall = true_positives / n_labels if n_labels else np.zeros(len(order))
    return precision, recall, np.asarray(scores, dtype=float)[order]


def average_precision(matched, scores, n_labels):
    """Area under the precision-recall curve (all-points interpolation) of
    picks ranked by score."""
    if not n_labels:
        return 0.0
    precision, recall, _ = precision_recall_curve(matched, scores, n_labels)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(envelope * recall_steps))


# ------------------------------------------------ clustering against known classes

def contingency(true_labels, predicted):
    """Counts (n_true, n_predicted) of each pair of labels (any integers)."""
    _, t = np.unique(np.asarray(true_labels), return_inverse=True)
    _, p = np.unique(np.asarray(predicted), return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(table, (t, p), 1)
    return table


def clustering_accuracy(true_labels, predicted):
    """Fraction of items in their class after the best one-to-one matching of
    predicted to true classes (Hungarian algorithm); unmatched classes count
    as wrong."""
    from scipy.optimize import linear_sum_assignment
    table = contingency(true_labels, predicted)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def normalized_mutual_information(true_labels, predicted):
    """Mutual information over the arithmetic mean of the two entropies."""
    table = contingency(true_labels, predicted).astype(float)
    joint = table / table.sum()
    pt, pp = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    mutual = np.sum(joint[nonzero] * np.log(joint[nonzero] / np.outer(pt, pp)[nonzero]))
    entropies = -np.sum(pt * np.log(pt)) - np.sum(pp * np.log(pp))
    return float(2 * mutual / entropies) if entropies > 0 else 1.0


def adjusted_rand_index(true_labels, predicted):
    """Rand index corrected for chance (Hubert and Arabie)."""
    table = contingency(true_labels, predicted).astype(float)

    def pairs(x):
        return np.sum(x * (x - 1) / 2)
    index = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / pairs(np.array([table.sum()]))
    maximum = (rows + cols) / 2
    return float((index - expected) / (maximum - expected)) if maximum != expected else 1.0
