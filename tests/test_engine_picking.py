"""YOLO dataset, coordinate mapping and the picking CLI on simulated data."""
import glob
import json
import os

import numpy as np
import pytest

from cryoprune_scipion.cli import main as cryoprune
from cryoprune_scipion.engine.dihedral import dihedral_copies, dihedral_copy
from cryoprune_scipion.engine.io import (InputError, read_coordinates, write_micrograph,
                                         write_table)
from cryoprune_scipion.engine.metrics import assign_picks, match_picks, score_picks
from cryoprune_scipion.engine.picking import (THRESHOLD_CHOICES, best_threshold,
                                              centres_to_micrograph, from_copy, fuse_copies,
                                              read_strips, read_training_coordinates,
                                              split_regions, stored_threshold,
                                              tile_origins, train_picker, write_yolo_dataset)
from cryoprune_scipion.engine.preprocess import PreprocessSettings
from cryoprune_scipion.engine.simulate import simulate_micrograph


def test_tiles_cover_the_image_with_the_requested_overlap():
    origins = tile_origins(1000, 256, 40)
    assert origins[0] == 0 and origins[-1] == 1000 - 256
    assert all(b - a <= 256 - 40 for a, b in zip(origins, origins[1:]))
    assert tile_origins(200, 256, 40) == [0]


@pytest.mark.parametrize("shape,working_size,working_box", [
    ((700, 1100), 512, 0), ((1100, 700), 640, 0), ((900, 900), 0, 0), ((1500, 1300), 1024, 0),
    ((1500, 1300), 512, 40)])  # the working box raises 512 to 1000
def test_coordinates_survive_yolo_labels_within_one_pixel(tmp_path, shape, working_size,
                                                          working_box):
    rng = np.random.default_rng(3)
    box = 60
    margin = box  # boxes clipped at a tile edge move their centre, so stay inside
    x = rng.uniform(margin, shape[1] - margin, 30)
    y = rng.uniform(margin, shape[0] - margin, 30)
    path = str(tmp_path / "mic.mrc")
    write_micrograph(path, rng.normal(size=shape))
    rows = [{"x": a, "y": b, "class": "top" if i % 2 else "side"}
            for i, (a, b) in enumerate(zip(x, y))]
    settings = PreprocessSettings(working_size=working_size, working_box=working_box)
    data_yaml, tile, _ = write_yolo_dataset({path: rows}, ["side", "top"], box, settings,
                                            str(tmp_path / "dataset"), val_fraction=0)
    grid = settings.grid(shape, box)
    recovered = []
    for label_file in glob.glob(str(tmp_path / "dataset/labels/train/*.txt")):
        top, left = (int(v) for v in os.path.basename(label_file)[:-4].split("_")[-2:])
        labels = np.loadtxt(label_file, ndmin=2)
        for class_id, cx, cy, w, h in labels:
            if w * tile >= box * grid.scale_x - 1e-3:  # unclipped boxes (labels keep 6 digits)
                bx, by = centres_to_micrograph([(cx * tile, cy * tile)], grid, (top, left))
                recovered.append((bx[0], by[0], int(class_id)))
    assert json.load(open(data_yaml))["names"] == ["side", "top"]
    recovered = np.array(recovered)
    for i, row in enumerate(rows):
        distance = np.hypot(recovered[:, 0] - row["x"], recovered[:, 1] - row["y"])
        assert distance.min() < 1.0, "particle %d lost in the labels" % i
        assert recovered[np.argmin(distance), 2] == (1 if row["class"] == "top" else 0)


@pytest.mark.parametrize("side", ["right", "bottom", "left", "top"])
def test_a_strip_along_one_side_validates_and_the_rest_trains(side):
    (t0, l0, b0, r0), (t1, l1, b1, r1) = split_regions((300, 500), 0.2, side)
    pixels = np.zeros((300, 500), dtype=int)
    pixels[t0:b0, l0:r0] += 1
    pixels[t1:b1, l1:r1] += 10
    assert set(np.unique(pixels)) == {1, 10}  # every pixel in one region, none in both
    strip = pixels == 10
    across = 500 if side in ("left", "right") else 300
    assert strip.sum() == round(0.2 * across) * (800 - across)
    edge = {"right": strip[:, -1], "left": strip[:, 0], "top": strip[0], "bottom": strip[-1]}
    assert edge[side].all()
    assert split_regions((300, 500), 0, side) == ((0, 0, 300, 500), None)


def test_each_micrograph_gives_a_validation_strip_and_no_particle_is_in_both(tmp_path):
    rng = np.random.default_rng(5)
    labelled, box = {}, 40
    for index in range(4):
        path = str(tmp_path / ("mic%d.mrc" % index))
        write_micrograph(path, rng.normal(size=(400, 400)))
        labelled[path] = [{"x": x, "y": y, "class": "side" if x > y else "top"}
                          for x, y in rng.uniform(30, 370, (60, 2))]
    write_yolo_dataset(labelled, ["top", "side"], box, PreprocessSettings(working_size=0),
                       str(tmp_path / "dataset"), val_fraction=0.25)
    strips = read_strips(str(tmp_path / "dataset"))
    assert len(strips) == 4
    assert {image.shape for image, _, _ in strips} == {(400, 100), (100, 400)}
    for _, strip_centres, classes in strips:  # the view class travels with each particle
        assert len(classes) == len(strip_centres) and set(classes) <= {0, 1}
    for split in ("train", "val"):
        stems = {os.path.basename(f).rsplit("_", 2)[0]
                 for f in glob.glob(str(tmp_path / "dataset/images" / split / "*.png"))}
        assert stems == {"mic%d" % i for i in range(4)}
    # sides right, bottom, left, top in turn: the strips hold the particles whose centre
    # lies in the outer quarter on their side, or within a box of it
    centres = [np.array([(r["x"], r["y"]) for r in labelled[path]]) for path in sorted(labelled)]

    def beyond(reach):
        strip_starts = [300 - reach, 300 - reach, -(100 + reach), -(100 + reach)]
        return sum(np.count_nonzero(c[:, axis] * sign + 0.5 * sign >= start)
                   for c, axis, sign, start in zip(centres, (0, 1, 0, 1), (1, 1, -1, -1),
                                                   strip_starts))
    assert sum(len(c) for _, c, _ in strips) == beyond(box)
    trained, tile = [], 256
    for label_file in glob.glob(str(tmp_path / "dataset/labels/train/*.txt")):
        stem, top, left = os.path.basename(label_file)[:-4].rsplit("_", 2)
        for _, cx, cy, _, _ in np.loadtxt(label_file, ndmin=2):
            trained.append((int(stem[-1]), int(left) + cx * tile, int(top) + cy * tile))
    strip_of = {0: lambda x, y: x >= 300, 1: lambda x, y: y >= 300,
                2: lambda x, y: x < 100, 3: lambda x, y: y < 100}
    assert not [p for p in trained if strip_of[p[0]](*p[1:])]  # no label in a strip
    assert len(trained) >= 240 - beyond(0)  # tiles overlap: a particle may be in two


def test_too_few_particles_in_the_strips_train_on_everything(tmp_path):
    path = str(tmp_path / "mic.mrc")
    write_micrograph(path, np.random.default_rng(2).normal(size=(400, 400)))
    rows = [{"x": x, "y": y} for x in range(60, 360, 50) for y in range(60, 360, 50)]
    data_yaml, _, splits = write_yolo_dataset(  # 36 particles, 6 in a strip of 0.2
        {path: rows}, ["particle"], 40, PreprocessSettings(working_size=0),
        str(tmp_path / "dataset"), val_fraction=0.2)
    assert splits == {"train": 1, "val": 0}
    assert json.load(open(data_yaml))["val"] == "images/train"
    assert not read_strips(str(tmp_path / "dataset"))
    assert not glob.glob(str(tmp_path / "dataset/images/val/*.png"))


def test_the_threshold_of_best_f1_is_chosen():
    # 10 particles; picks scoring 0.9 and 0.7 are right, those at 0.5 and 0.3 wrong
    scores = np.repeat([0.9, 0.7, 0.5, 0.3], [6, 3, 4, 8])
    matched = np.repeat([True, True, False, False], [6, 3, 4, 8])
    threshold, figures = best_threshold(matched, scores, 10)
    assert threshold == 0.55  # of the equals above 0.5 and up to 0.7, nearest the default
    assert figures["precision"] == 1.0 and figures["recall"] == 0.9
    assert figures["f1"] == pytest.approx(2 * 0.9 / 1.9)
    assert threshold in THRESHOLD_CHOICES
    assert stored_threshold({}, 4) == 0.25  # pickers trained without validation


@pytest.mark.parametrize("wrong_picks, expected", [(5, 0.25), (60, 0.35)])
def test_the_threshold_leaves_the_default_only_for_a_gain_beyond_the_standard_error(
        wrong_picks, expected):
    # 400 particles, 330 found at 0.9; the wrong picks score 0.3. Dropping 5 of
    # them (F1 0.898 -> 0.904) is within one standard error (0.015), dropping 60
    # (0.835 -> 0.904) is not
    scores = np.repeat([0.9, 0.3], [330, wrong_picks])
    matched = np.repeat([True, False], [330, wrong_picks])
    threshold, figures = best_threshold(matched, scores, 400)
    assert threshold == expected
    assert figures["recall"] == pytest.approx(330 / 400)
    assert figures["precision"] == pytest.approx(1.0 if expected > 0.3
                                                 else 330 / (330 + wrong_picks))


def test_strips_are_scored_within_their_labels_and_away_from_their_edges():
    from cryoprune_scipion.engine.picking import _scored_area, _strip_matches
    # on the strip, in its edge margin, off it, and the lowest right label
    truth = np.array([(50, 50), (4, 30), (-3, 70), (88, 88)])
    area = _scored_area(truth, (100, 100), margin=10)
    assert area == (10, 30, 88, 88)  # unlabelled above y 30: not scored
    picks = np.array([(50, 51), (11, 30), (80, 80), (60, 12)])
    matched, right_view, counted = _strip_matches(
        picks, np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 1]), truth,
        np.array([1, 1, 0, 0]), area, radius=8)
    assert matched.tolist() == [True, True, False, False]
    assert right_view.tolist() == [True, False, False, False]  # the second gave view 0
    # a right pick, one of an edge particle (ignored), a false one, one where nobody labelled
    assert counted.tolist() == [True, False, True, False]


def test_micrographs_without_coordinates_are_skipped(tmp_path):
    mics = [str(tmp_path / (stem + ".mrc")) for stem in "abc"]
    write_micrograph(mics[0], np.zeros((20, 20)))
    write_table(str(tmp_path / "a.csv"), ["x", "y"], [{"x": 5, "y": 6}])
    write_table(str(tmp_path / "b.csv"), ["x", "y"], [])
    labelled, skipped, classes = read_training_coordinates(mics, str(tmp_path))
    assert list(labelled) == mics[:1] and len(skipped) == 2
    assert classes == ["particle"]


def test_bad_training_input_is_refused_with_a_message(tmp_path):
    path = str(tmp_path / "a.mrc")
    with pytest.raises(InputError, match="no coordinates for any of the 1 micrographs"):
        read_training_coordinates([path], str(tmp_path))
    write_micrograph(path, np.zeros((100, 100)))
    write_table(str(tmp_path / "a.csv"), ["x", "y", "class"], [{"x": 5, "y": 6, "class": "tilted"}])
    with pytest.raises(InputError, match="class tilted are not among the classes top,side"):
        read_training_coordinates([path], str(tmp_path), ["top", "side"])
    with pytest.raises(InputError, match="box size 300 px does not fit micrograph"):
        write_yolo_dataset({path: [{"x": 50, "y": 50}]}, ["particle"], 300,
                           PreprocessSettings(working_size=0), str(tmp_path / "d"))


@pytest.fixture(scope="module")
def trained_picker(tmp_path_factory):
    """A picker trained through the CLI on five simulated micrographs: 9 tiles
    of 256 px each at working size 512, about 225 training steps in 25 epochs
    (YOLO from scratch starts to find particles after about 150)."""
    root = tmp_path_factory.mktemp("picker")
    micrographs, truth = [], {}
    for index in range(7):
        simulated = simulate_micrograph((768, 768), n_particles=28, snr=2.0, seed=index)
        path = str(root / ("mic%d.mrc" % index))
        write_micrograph(path, simulated.image, simulated.pixel_size)
        micrographs.append(path)
        truth[path] = simulated.particles
        os.makedirs(root / "coords", exist_ok=True)
        write_table(str(root / "coords" / ("mic%d.csv" % index)), ["x", "y", "class"],
                    [{"x": p["x"], "y": p["y"], "class": p["view"]} for p in simulated.particles])
    status = cryoprune(["train-picker", "--micrographs", *micrographs[:5],
                        "--coords", str(root / "coords"), "--box", "64",
                        "--out", str(root / "model"), "--epochs", "25",
                        "--val-fraction", "0.3",
                        "--working-size", "512", "--threads", "2"])
    assert status == 0
    return root, micrographs, truth


def test_training_writes_the_model_and_its_metadata(trained_picker):
    root, _, _ = trained_picker
    metadata = json.load(open(root / "model" / "model.json"))
    assert os.path.getsize(root / "model" / "model.pt") > 1e6
    assert metadata["classes"] == ["side", "top"]
    assert metadata["box_size"] == 64 and metadata["micrographs_trained"] == 5
    assert metadata["weights"] == "last"
    assert metadata["validation_fraction"] == 0.3
    assert set(metadata["thresholds"]) == {"1", "2", "4", "8"}
    assert set(metadata["thresholds"].values()) <= set(THRESHOLD_CHOICES)
    for copies, figures in metadata["threshold_validation"].items():
        assert figures["particles"] >= 20 and figures["f1"] > 0.7, (copies, figures)
    assert metadata["preprocessing"]["working_size"] == 512
    assert metadata["working_shape"] == [512, 512]
    assert metadata["preprocessing"]["wavelet"] == "db15"
    assert set(metadata["final_metrics"]) >= {"precision", "recall", "mAP50", "mAP50-95"}
    epochs = open(root / "model" / "metrics.csv").read().strip().splitlines()[1:]
    assert len(epochs) == 25  # patience (30) is longer than the run


@pytest.mark.parametrize("tta", [1, 8])
def test_picks_land_on_the_particles_of_unseen_micrographs(trained_picker, tta):
    root, micrographs, truth = trained_picker
    held_out = micrographs[5:]
    picks_dir = root / ("picks_tta%d" % tta)
    assert cryoprune(["pick", "--model", str(root / "model" / "model.pt"),
                      "--micrographs", *held_out, "--out", str(picks_dir),
                      "--threshold", "0.1", "--tta", str(tta)]) == 0
    for path in held_out:
        csv_path = picks_dir / (os.path.basename(path)[:-4] + ".csv")
        assert open(csv_path).readline().strip() == "x,y,score,class"
        picks = read_coordinates(str(csv_path))
        assert {p["class"] for p in picks} <= {"side", "top"}
        score = score_picks([(p["x"], p["y"]) for p in picks],
                            [(p["x"], p["y"]) for p in truth[path]], radius=12,
                            scores=[float(p["score"]) for p in picks])
        assert score.f1 > 0.7, "%s: %s" % (path, score.as_dict())
        # one pick per particle, not one per view: no two picks within a quarter box
        centres = np.array([(p["x"], p["y"]) for p in picks])
        distances = np.hypot(*(centres[:, None] - centres[None]).T)
        np.fill_diagonal(distances, np.inf)
        assert distances.min() > 16, "%s: two picks %.1f px apart" % (path, distances.min())


def test_pick_uses_the_threshold_the_training_chose_unless_told(trained_picker):
    root, micrographs, _ = trained_picker
    chosen = json.load(open(root / "model" / "model.json"))["thresholds"]["1"]
    picked = {}
    for name, threshold in (("chosen", []), ("low", ["--threshold", "0.05"])):
        assert cryoprune(["pick", "--model", str(root / "model" / "model.pt"),
                          "--micrographs", micrographs[5], "--out", str(root / name),
                          "--tta", "1", *threshold]) == 0
        picked[name] = read_coordinates(str(root / name / "mic5.csv"))
    assert picked["chosen"] and min(float(p["score"]) for p in picked["chosen"]) >= chosen
    assert picked["chosen"] == [p for p in picked["low"] if float(p["score"]) >= chosen]


def test_pick_refuses_a_missing_model_and_a_corrupt_micrograph(trained_picker, tmp_path, capsys):
    root, micrographs, _ = trained_picker
    assert cryoprune(["pick", "--model", str(tmp_path / "none.pt"), "--micrographs",
                      micrographs[0], "--out", str(tmp_path)]) == 2
    assert "none.pt not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.mrc"
    corrupt.write_bytes(b"\0" * 100)
    assert cryoprune(["pick", "--model", str(root / "model" / "model.pt"), "--micrographs",
                      str(corrupt), "--out", str(tmp_path / "picks")]) == 2
    assert "corrupt.mrc: cannot read the image" in capsys.readouterr().err


def test_each_copy_of_test_time_augmentation_maps_back_to_the_micrograph():
    image = np.zeros((50, 70))
    image[12, 33] = 1
    for turns, mirror in dihedral_copies(8):
        copy = dihedral_copy(image, turns, mirror)
        row, column = np.unravel_index(copy.argmax(), copy.shape)
        back = from_copy([[column + 0.5, row + 0.5]], image.shape, turns, mirror)
        assert back.tolist() == [[33.5, 12.5]], (turns, mirror)
    assert len(set(dihedral_copies(8))) == 8 and dihedral_copies(2) == [(0, False), (0, True)]


def test_fused_scores_are_means_over_the_copies_with_a_miss_counted_as_zero():
    first = (np.array([[100.0, 100.0], [104.0, 100.0], [300.0, 300.0]]),
             np.array([0.8, 0.3, 0.4]), np.array([0, 1, 1]))
    second = (np.array([[102.0, 100.0]]), np.array([0.6]), np.array([1]))
    centres, scores, classes = fuse_copies([first, second], radius=16)
    assert scores.tolist() == pytest.approx([0.7, 0.2])
    # the weaker pick of the first copy 4 px away is the same particle, not a third
    assert centres[0].tolist() == pytest.approx([(0.8 * 100 + 0.6 * 102) / 1.4, 100.0])
    assert classes.tolist() == [0, 1]
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=int))
    assert len(fuse_copies([empty, empty], radius=16)[1]) == 0


def test_picks_near_the_edge_are_dropped():
    from cryoprune_scipion.engine.picking import away_from_edges
    picks = [{"x": x, "y": 50.0} for x in (10.0, 31.9, 32.0, 67.0, 67.1, 90.0)]
    kept = away_from_edges(picks, (100, 100), border=32)
    assert [p["x"] for p in kept] == [32.0, 67.0]
    assert away_from_edges(picks, (100, 100), border=0) == picks


def test_each_label_is_matched_once_by_the_best_scoring_pick_within_the_radius():
    labels = [(100.0, 100.0), (300.0, 100.0)]
    picks = [(110.0, 100.0), (95.0, 100.0), (300.0, 150.0), (320.0, 100.0)]
    scores = [0.5, 0.9, 0.8, 0.7]
    assigned = assign_picks(picks, labels, radius=27, scores=scores)
    assert assigned.tolist() == [-1, 0, -1, 1]
    assert match_picks(picks, labels, 27, scores).tolist() == [False, True, False, True]


def test_the_preprocess_command_flattens_at_the_scale_of_the_box(tmp_path, capsys):
    rng = np.random.default_rng(4)
    columns = np.arange(600)[None, :]
    path = str(tmp_path / "ramp.mrc")
    write_micrograph(path, rng.normal(size=(600, 600)) + 10.0 * columns / 600)
    command = ["preprocess", "--micrographs", path, "--out", str(tmp_path / "png"),
               "--working-size", "300", "--working-box", "0", "--no-preprocess",
               "--flatten", "2"]
    assert cryoprune(command) == 2
    assert "--box" in capsys.readouterr().err
    assert cryoprune(command + ["--box", "30"]) == 0
    from PIL import Image
    picture = np.asarray(Image.open(tmp_path / "png" / "ramp.png"), dtype=float)
    # unflattened, the halves' means would differ by 5 noise sigmas, over 100 grey levels
    assert abs(picture[:, 30:150].mean() - picture[:, 150:270].mean()) < 10


def test_preprocessing_is_chosen_by_the_view_f1_on_the_strips(tmp_path, monkeypatch):
    from cryoprune_scipion.engine import picking
    filters = PreprocessSettings(working_size=512)
    view_f1 = {}  # of the next trainings: flattening on or off
    trained = []

    def train(micrographs, coords, box, folder, settings, resume, **training):
        name = "flattening" if settings.flatten else "filters"
        trained.append(name)
        metadata = {"preprocessing": settings.to_dict()}
        if view_f1[name] is not None:  # else too few particles in the strips
            metadata.update(thresholds={"4": 0.3},
                            threshold_validation={"4": {"f1": 0.9, "view_f1": view_f1[name]}})
        os.makedirs(folder)
        for file_name, text in (("model.json", json.dumps(metadata)), ("model.pt", name),
                                ("metrics.csv", "epoch\n1\n")):
            with open(os.path.join(folder, file_name), "w") as f:
                f.write(text)
        return metadata
    monkeypatch.setattr(picking, "train_picker", train)

    def choose(name, filters_f1, flattening_f1):
        view_f1.update(filters=filters_f1, flattening=flattening_f1)
        del trained[:]
        out = tmp_path / name
        metadata = picking.train_picker_choosing_preprocessing([], "", 64, str(out), filters)
        assert json.load(open(out / "model.json")) == metadata
        return metadata, open(out / "model.pt").read()

    metadata, weights = choose("a", 0.8, 0.85)
    assert weights == "flattening" and trained == ["filters", "flattening"]
    assert metadata["preprocessing"] == PreprocessSettings.disabled(512).to_dict()
    assert metadata["preprocessing_choice"] == {
        "chosen": "flattening", "trials": {
            "filters": {"f1": 0.9, "view_f1": 0.8, "threshold": 0.3},
            "flattening": {"f1": 0.9, "view_f1": 0.85, "threshold": 0.3}}}
    assert choose("b", 0.85, 0.85)[1] == "filters"  # a tie keeps the paper's filters
    metadata, weights = choose("c", None, None)  # nothing to choose on: one training
    assert weights == "filters" and trained == ["filters"]
    assert metadata["preprocessing_choice"] == {"chosen": "filters", "trials": {}}


def test_train_picker_chooses_its_preprocessing_and_records_it(tmp_path):
    micrographs = []
    os.makedirs(tmp_path / "coords")
    for index in range(3):
        simulated = simulate_micrograph((768, 768), n_particles=28, snr=2.0, seed=index)
        micrographs.append(str(tmp_path / ("mic%d.mrc" % index)))
        write_micrograph(micrographs[-1], simulated.image, simulated.pixel_size)
        write_table(str(tmp_path / "coords" / ("mic%d.csv" % index)), ["x", "y"],
                    [{"x": p["x"], "y": p["y"]} for p in simulated.particles])
    arguments = ["train-picker", "--micrographs", *micrographs, "--coords",
                 str(tmp_path / "coords"), "--box", "64", "--out", str(tmp_path / "model"),
                 "--epochs", "3", "--val-fraction", "0.3", "--working-size", "512",
                 "--working-box", "64", "--threads", "2", "--choose-preprocessing"]
    assert cryoprune(arguments + ["--no-preprocess"]) == 2  # nothing to choose between
    assert not os.path.exists(tmp_path / "model")  # refused before anything is written
    assert cryoprune(arguments) == 0
    metadata = json.load(open(tmp_path / "model" / "model.json"))
    assert metadata["working_shape"] == [768, 768]  # the box raised 512 to the micrograph's
    choice = metadata["preprocessing_choice"]
    assert set(choice["trials"]) == {"filters", "flattening"}
    for figures in choice["trials"].values():
        assert 0 <= figures["view_f1"] <= figures["f1"] <= 1
    chosen = (PreprocessSettings.disabled(512, working_box=64)
              if choice["chosen"] == "flattening"
              else PreprocessSettings(working_size=512, working_box=64))
    assert metadata["preprocessing"] == json.loads(json.dumps(chosen.to_dict()))
    assert metadata["final_metrics"] and len(open(tmp_path / "model" / "metrics.csv")
                                             .readlines()) == 1 + 3  # the chosen's epochs
    assert not os.path.exists(tmp_path / "model" / "preprocessing_trials")  # state removed
    # A resumed choice keeps a finished trial, and refuses one of other settings.
    trial = dict(micrographs=micrographs, coords_dir=str(tmp_path / "coords"), box_size=64,
                 out_dir=str(tmp_path / "trial"), settings=chosen, val_fraction=0.3,
                 threads=2)
    finished = train_picker(epochs=1, **trial)
    weights = os.path.getmtime(tmp_path / "trial" / "model.pt")
    assert train_picker(epochs=1, resume=True, **trial) == json.loads(json.dumps(finished))
    assert os.path.getmtime(tmp_path / "trial" / "model.pt") == weights  # not trained again
    with pytest.raises(InputError, match="training.epochs: 1 then, 2 now"):
        train_picker(epochs=2, resume=True, **trial)
