"""How much of the pruner's remaining error on real windows is in the labels
(issue 12): the blind visual audit of picking/label_audit.py on the pruning
benchmark's test windows.

`montage` trains the default pruner of errors.py (seed 0, 50 examples per
class), takes every window it gets wrong (junk called particle, particle
called junk) and, as controls, --per-group windows it gets right of each
kind, shuffles them and draws the numbered tiles of label_audit.py around
each window's centre in its micrograph, the groups hidden. The judge calls
each tile as there (p, o, n, ?), and `score` reports the calls per group and
the F1 of the pruner on labels corrected by them: junk windows called p
hold a particle, particle windows called n hold none ("?" leaves the label
as it is); the shares of the sampled right windows are applied to all of
them (and, apart, to none: the wrong windows corrected only).

    nice -n 10 .venv/bin/python benchmarks/pruning/audit.py montage \\
        --key benchmarks/pruning/audit_key.json --png-prefix /tmp/pruning_audit
    .venv/bin/python benchmarks/pruning/audit.py score \\
        --key benchmarks/pruning/audit_key.json --calls benchmarks/pruning/audit_calls.txt \\
        --out benchmarks/pruning/results_audit.json --png docs/pruning_audit.png
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "picking"))
import data  # noqa: E402
import errors  # noqa: E402
import evaluate  # noqa: E402
import label_audit  # noqa: E402
import run  # noqa: E402

RIGHT_PARTICLE, WRONG_JUNK = "particle called particle", "junk called particle"
WRONG_PARTICLE, RIGHT_JUNK = "particle called junk", "junk called junk"
GROUPS = (RIGHT_PARTICLE, WRONG_JUNK, WRONG_PARTICLE, RIGHT_JUNK)


def window_groups(is_particle, called):
    return np.select([is_particle & called, ~is_particle & called, is_particle & ~called],
                     [RIGHT_PARTICLE, WRONG_JUNK, WRONG_PARTICLE], RIGHT_JUNK)


def tiles(groups, centres, names, kinds, per_group, seed):
    """Every wrong window and `per_group` right windows of each kind, at
    random, shuffled: dicts as label_audit's tiles, with the window's class."""
    rng = np.random.default_rng(seed)
    chosen = []
    for group in GROUPS:
        mine = np.flatnonzero(groups == group)
        if group in (RIGHT_PARTICLE, RIGHT_JUNK):
            mine = np.sort(rng.choice(mine, size=per_group, replace=False))
        chosen += [dict(group=group, kind=kinds[i], stem=names[i], x=float(centres[i][0]),
                        y=float(centres[i][1])) for i in mine]
    order = rng.permutation(len(chosen))
    return [dict(chosen[i], number=n + 1) for n, i in enumerate(order)]


def montage(args):
    run.one_thread()
    train, test = run.real_windows(size=errors.SIZE)
    x_test, y_test = run.test_arrays(test, data.REAL_CLASSES)
    centres, names = errors.test_centres()
    called = errors.called_particle(train, x_test, args.shots, args.seed)
    groups = window_groups(y_test == 0, called)
    counts = {g: int((groups == g).sum()) for g in GROUPS}
    chosen = tiles(groups, np.concatenate([centres[c] for c in data.REAL_CLASSES]),
                   sum((names[c] for c in data.REAL_CLASSES), []),
                   [data.REAL_CLASSES[k] for k in y_test], args.per_group, args.seed)
    with open(args.key, "w") as handle:
        json.dump({"seed": args.seed, "shots": args.shots, "windows": counts,
                   "tiles": chosen}, handle)
    print("\n".join(label_audit.draw_montages(chosen, args.png_prefix)))


def corrected_figures(counts, audit, right_too=True):
    """F1 of the pruner's particle calls with the labels corrected by the
    judged shares (of the wrong windows only, unless `right_too`)."""
    def share(group, call):
        if not right_too and group in (RIGHT_PARTICLE, RIGHT_JUNK):
            return 0.0
        return audit[group][call]["share"]
    right_p, wrong_j = counts[RIGHT_PARTICLE], counts[WRONG_JUNK]
    wrong_p, right_j = counts[WRONG_PARTICLE], counts[RIGHT_JUNK]
    tp = right_p * (1 - share(RIGHT_PARTICLE, "n")) + wrong_j * share(WRONG_JUNK, "p")
    fp = right_p * share(RIGHT_PARTICLE, "n") + wrong_j * (1 - share(WRONG_JUNK, "p"))
    fn = wrong_p * (1 - share(WRONG_PARTICLE, "n")) + right_j * share(RIGHT_JUNK, "p")
    return evaluate.figures(round(tp), round(fp), round(fn))


def score(args):
    with open(args.key) as handle:
        key = json.load(handle)
    calls = label_audit.read_calls(args.calls)
    audit = label_audit.shares(key["tiles"], calls, GROUPS)
    counts = key["windows"]
    by_kind = {}
    for tile in key["tiles"]:
        if tile["group"] == WRONG_JUNK:
            by_kind.setdefault(tile["kind"], {c: 0 for c in label_audit.CALLS})
            by_kind[tile["kind"]][calls[tile["number"]]] += 1
    evaluate.save_result({
        "seed": key["seed"], "shots": key["shots"], "audit": audit,
        "junk_called_particle_by_kind": by_kind,
        "as_labelled": evaluate.figures(counts[RIGHT_PARTICLE], counts[WRONG_JUNK],
                                         counts[WRONG_PARTICLE]),
        "labels_corrected": corrected_figures(counts, audit),
        "labels_corrected_wrong_windows_only": corrected_figures(counts, audit, False)},
        args.out)
    if args.png:
        label_audit.draw_key(key["tiles"], calls, args.png, GROUPS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("montage", "score"))
    parser.add_argument("--key", required=True, help="the key's JSON path")
    parser.add_argument("--shots", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-group", type=int, default=30,
                        help="montage: right windows of each kind drawn")
    parser.add_argument("--png-prefix", help="montage: PNG path prefix")
    parser.add_argument("--calls", help="score: the judge's calls")
    parser.add_argument("--out", help="score: JSON result")
    parser.add_argument("--png", help="score: a PNG of tiles of each group with their calls")
    args = parser.parse_args(argv)
    (montage if args.step == "montage" else score)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
