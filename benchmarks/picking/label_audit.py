"""How much of the picking benchmark's remaining error is in the labels
(issue 10): a blind visual audit of false positives, true positives and
missed labels on the beta-galactosidase test micrographs.

`montage` samples, at one threshold, the same number of true positives,
false positives and missed labels (labels no kept pick matched, at 27 px)
at random, and as a control (`--background`) points where neither a label
nor a kept pick lies within a particle radius; shuffles them together and
draws them as numbered tiles (a window of three particle diameters around
the point, binned 3 x 3, the micrograph's 1-99 % grey range, a cross at the
centre and a circle of the particle's size), so that the judge does not know
which is which. The key (the tiles' groups and the figures as labelled) is
written apart.

The judge writes one call per tile into a text file, `number call` per
line:

- p: a particle lies at the centre (within about half its radius);
- o: a particle's edge, or the gap between two particles, at the centre;
- n: no particle: ice, carbon, an aggregate, the padding band;
- ?: cannot tell.

`score` reads the calls and the key and reports, per group, the share of
each call with its 95 % interval, and the figures the test micrographs would
have if the labels were corrected by those shares: false positives called
particles become true positives (unlabelled particles) unless they lie
within a particle radius of a label (a second or off-centre pick on a
labelled particle); missed labels called no particle leave the label set.
The true positives' calls measure the judge's sensitivity, the background's
the judge's false alarms; where both are there, the shares of particles among
the false positives and of no particle among the missed labels are also given
corrected for them ((share - wrong) / (right - wrong)).
Particles neither labelled nor picked stay unknown, so the corrected figures
are an estimate, not a bound.

    .venv/bin/python benchmarks/picking/label_audit.py montage \\
        --picks benchmarks/work/picking/strips_area/cryoprune_none/picks \\
        --key benchmarks/picking/label_audit_key.json --png-prefix /tmp/audit
    .venv/bin/python benchmarks/picking/label_audit.py score \\
        --key benchmarks/picking/label_audit_key.json \\
        --calls benchmarks/picking/label_audit_calls.txt \\
        --out benchmarks/picking/results_label_audit.json
    # the control round: 30 per group and 30 background points; its score
    # step also draws docs/picking_label_audit.png (--png)
    ... montage --per-group 30 --background 30 --seed 1 \\
        --key benchmarks/picking/label_audit_key_control.json ...
"""
import argparse
import json
import os
import sys

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

from cryoprune_scipion.engine.io import read_micrograph  # noqa: E402
from cryoprune_scipion.engine.metrics import assign_picks  # noqa: E402

DIAMETER = evaluate.DIAMETER
MATCH_RADIUS = evaluate.RADII[0]
WINDOW = 3 * DIAMETER
BIN = 3
GROUPS = ("true positive", "false positive", "missed label")
BACKGROUND = "background"
CALLS = ("p", "o", "n", "?")
COLUMNS, ROWS = 5, 4


def outcomes(picks_dir, stems, threshold):
    """Per group, the (stem, x, y, near a label) of every true positive, false
    positive and missed label at `threshold` and 27 px; near: another label
    within the particle radius (for a true positive, its own). Also, per
    micrograph, the labels and kept picks together (where background is not)."""
    found = {group: [] for group in GROUPS}
    occupied = {}
    for stem in stems:
        picks = evaluate.read_picks(picks_dir, stem)
        picks = picks[picks[:, 2] >= threshold]
        labels = evaluate.read_labels(stem)
        assigned = assign_picks(picks[:, :2], labels, MATCH_RADIUS, scores=picks[:, 2])
        missed = np.setdiff1d(np.arange(len(labels)), assigned[assigned >= 0])
        occupied[stem] = np.vstack([labels, picks[:, :2]])
        tree = cKDTree(labels)
        for group, points in zip(GROUPS, (picks[assigned >= 0, :2],
                                          picks[assigned < 0, :2], labels[missed])):
            within = [len(n) > (group == "missed label")
                      for n in tree.query_ball_point(points, DIAMETER / 2)]
            found[group] += [(stem, float(x), float(y), bool(near))
                             for (x, y), near in zip(points, within)]
    return found, occupied


def background_point(occupied, rng):
    """A random point inside the labelled area of a random micrograph,
    farther than the particle radius from every label and kept pick: where
    neither the expert nor the picker saw a particle."""
    stems = sorted(occupied)
    low, high = evaluate.BORDER, evaluate.MICROGRAPH_SIZE - evaluate.BORDER
    while True:
        stem = stems[rng.integers(len(stems))]
        x, y = rng.uniform(low, high, size=2)
        if np.min(np.hypot(*(occupied[stem] - (x, y)).T)) > DIAMETER / 2:
            return dict(stem=stem, x=float(x), y=float(y), near_label=False, group=BACKGROUND)


def sample(found, occupied, per_group, background, seed):
    """`per_group` of each group and `background` background points at
    random, shuffled together: a list of dicts with number, group, stem, x, y,
    near_label."""
    rng = np.random.default_rng(seed)
    tiles = []
    for group in GROUPS:
        chosen = rng.choice(len(found[group]), size=per_group, replace=False)
        tiles += [dict(zip(("stem", "x", "y", "near_label"), found[group][i]), group=group)
                  for i in sorted(chosen)]
    tiles += [background_point(occupied, rng) for _ in range(background)]
    order = rng.permutation(len(tiles))
    return [dict(tiles[i], number=n + 1) for n, i in enumerate(order)]


def window(image, x, y, grey_range):
    """The binned window around (x, y), padded with the micrograph's mean."""
    half = WINDOW // 2
    padded = np.pad(image, half, constant_values=float(image.mean()))
    cut = padded[int(round(y)):int(round(y)) + WINDOW, int(round(x)):int(round(x)) + WINDOW]
    binned = cut.reshape(WINDOW // BIN, BIN, WINDOW // BIN, BIN).mean(axis=(1, 3))
    low, high = grey_range
    return np.clip((binned - low) / (high - low), 0, 1)


def draw_page(tiles, titles, columns, rows, path, images):
    """One PNG of tiles in a grid; `images` caches the micrographs read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    centre = WINDOW // BIN / 2
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.6, rows * 2.75))
    for axis, tile, title in zip(axes.flat, tiles, titles):
        if tile["stem"] not in images:
            image = read_micrograph(os.path.join(
                evaluate.DATA_DIR, "micrographs", tile["stem"] + ".jpg")).astype(float)
            images[tile["stem"]] = (image, tuple(np.percentile(image, (1, 99))))
        image, grey_range = images[tile["stem"]]
        axis.imshow(window(image, tile["x"], tile["y"], grey_range), cmap="gray",
                    vmin=0, vmax=1)
        axis.add_patch(Circle((centre, centre), DIAMETER / 2 / BIN, fill=False,
                              color="yellow", alpha=0.35, lw=0.8))
        axis.plot([centre], [centre], "r+", ms=6)
        axis.set_title(title, fontsize=9, pad=2)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout(pad=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_montages(tiles, png_prefix):
    """The blind pages: tiles titled by number only."""
    images, paths = {}, []
    per_page = COLUMNS * ROWS
    for page in range(0, len(tiles), per_page):
        chunk = tiles[page:page + per_page]
        paths.append("%s_%d.png" % (png_prefix, page // per_page + 1))
        draw_page(chunk, [str(t["number"]) for t in chunk], COLUMNS, ROWS, paths[-1], images)
    return paths


def present_groups(tiles):
    return [g for g in GROUPS + (BACKGROUND,) if any(t["group"] == g for t in tiles)]


def draw_key(tiles, calls, path, groups):
    """The first COLUMNS tiles of each group, a row per group, titled with
    the group and the judge's call."""
    shown = [t for g in groups for t in sorted(
        (t for t in tiles if t["group"] == g), key=lambda t: t["number"])[:COLUMNS]]
    titles = ["%s %d: %s" % (t["group"], t["number"], calls.get(t["number"], "-"))
              for t in shown]
    draw_page(shown, titles, COLUMNS, len(groups), path, {})


def read_calls(path):
    calls = {}
    with open(path) as handle:
        for line in handle:
            fields = line.split("#")[0].split()
            if fields:
                number, call = int(fields[0]), fields[1]
                if call not in CALLS:
                    raise SystemExit("%s: call %r for tile %d is not one of %s"
                                     % (path, call, number, ", ".join(CALLS)))
                calls[number] = call
    return calls


def wilson_interval(count, total, z=1.96):
    share = count / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) \
        / (1 + z * z / total)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def shares(tiles, calls, groups):
    """Per group: the count, share and 95 % interval of each call."""
    result = {}
    for group in groups:
        numbers = [t["number"] for t in tiles if t["group"] == group]
        judged = [calls[n] for n in numbers if n in calls]
        result[group] = {"tiles": len(numbers), "judged": len(judged)}
        for call in CALLS:
            count = judged.count(call)
            result[group][call] = {"count": count, "share": round(count / len(judged), 3),
                                   "interval_95": wilson_interval(count, len(judged))}
    return result


def unlabelled_share(tiles, calls):
    """The share of judged false positives that are particles away from
    every label."""
    judged = [t for t in tiles if t["group"] == "false positive" and t["number"] in calls]
    found = sum(calls[t["number"]] == "p" and not t["near_label"] for t in judged)
    return {"count": found, "share": round(found / len(judged), 3),
            "interval_95": wilson_interval(found, len(judged))}


def judge_corrected(share, call, audit):
    """A group's `share` of `call` (p or n) corrected for how often the judge
    gives that call to particles (true positives) and to background:
    (share - wrong) / (right - wrong), clipped to [0, 1]."""
    particles = audit["true positive"][call]["share"]
    background = audit[BACKGROUND][call]["share"]
    right, wrong = (particles, background) if call == "p" else (background, particles)
    return round(min(1.0, max(0.0, (share - wrong) / (right - wrong))), 3)


def corrected_figures(counts, unlabelled_share, not_particle_share):
    """Figures at 27 px with the labels corrected by these shares of the
    false positives and missed labels."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    unlabelled = round(fp * unlabelled_share)
    return evaluate.figures(tp + unlabelled, fp - unlabelled,
                             fn - round(fn * not_particle_share))


def score(key, calls):
    audit = shares(key["tiles"], calls, present_groups(key["tiles"]))
    unlabelled = unlabelled_share(key["tiles"], calls)
    audit["unlabelled particles among false positives"] = unlabelled
    counts = key["as_labelled_at_27px"]
    result = {"threshold": key["threshold"], "seed": key["seed"], "audit": audit,
              "as_labelled_at_27px": counts,
              "labels_corrected_at_27px": corrected_figures(
                  counts, unlabelled["share"], audit["missed label"]["n"]["share"])}
    if BACKGROUND in audit:
        shares_for_judge = {"unlabelled particles among false positives":
                            judge_corrected(unlabelled["share"], "p", audit),
                            "no particle among missed labels":
                            judge_corrected(audit["missed label"]["n"]["share"], "n", audit)}
        result["corrected_for_the_judge"] = dict(shares_for_judge, figures_at_27px=(
            corrected_figures(counts, *shares_for_judge.values())))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("montage", "score"))
    parser.add_argument("--key", required=True, help="the key's JSON path")
    parser.add_argument("--picks", help="montage: picks folder of run_cryoprune.py")
    parser.add_argument("--threshold", type=float, default=0.25)
    parser.add_argument("--per-group", type=int, default=80)
    parser.add_argument("--background", type=int, default=0,
                        help="montage: this many background points too, as a control")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png-prefix", help="montage: PNG path prefix")
    parser.add_argument("--png", help="score: a PNG of tiles of each group with their calls")
    parser.add_argument("--calls", help="score: the judge's calls")
    parser.add_argument("--out", help="score: JSON result")
    args = parser.parse_args(argv)

    if args.step == "montage":
        stems = [evaluate.stem(p) for p in evaluate.split()[1]]
        tiles = sample(*outcomes(args.picks, stems, args.threshold), args.per_group,
                       args.background, args.seed)
        measured = evaluate.evaluate(args.picks, stems, args.threshold)["at_27px"]
        with open(args.key, "w") as handle:
            json.dump({"threshold": args.threshold, "seed": args.seed,
                       "as_labelled_at_27px": measured, "tiles": tiles}, handle)
        print("\n".join(draw_montages(tiles, args.png_prefix)))
        return 0
    with open(args.key) as handle:
        key = json.load(handle)
    calls = read_calls(args.calls)
    evaluate.save_result(score(key, calls), args.out)
    if args.png:
        draw_key(key["tiles"], calls, args.png, present_groups(key["tiles"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
