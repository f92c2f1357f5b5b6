"""Input sanity: coordinates off the micrograph or repeated are dropped and
counted, all of them off is an error; unreadable coordinate tables, an
untrained classification encoder, junk classes of too few examples and
impossible simulation settings are one-line errors (exit code 2), and the
protocol forms refuse the same."""
import json
import logging
import os

import numpy as np
import pyworkflow.object as pwobj
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.protocols import ProtImportParticles

from cryoprune_scipion.cli import main as cli_main
from cryoprune_scipion.engine import simulate
from cryoprune_scipion.engine.coordinates import DUPLICATE_RADIUS, sanitize_coordinates
from cryoprune_scipion.engine.io import (InputError, read_coordinates, write_micrograph,
                                         write_stack, write_table)
from cryoprune_scipion.engine.pruning import MIN_CLASS_EXAMPLES
from cryoprune_scipion.engine.windows import extract_windows
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtPickerOptimizerTraining)

SHAPE = (100, 200)  # rows, columns


def input_error(capsys, command, *argv):
    """The one error line of a command that must exit with code 2."""
    code = cli_main([command] + [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("cryoprune %s: error: " % command), err
    return err[0]


# ------------------------------------------------------ coordinate sanitation

def test_centres_off_the_micrograph_are_dropped_and_counted():
    xy = [(10, 10), (-3, 50), (50, -0.6), (199.4, 99.4), (200.2, 50), (50, 100),
          (np.nan, 5), (0, 0)]
    kept, counts = sanitize_coordinates(xy, SHAPE)
    # A centre belongs to the pixel it rounds to: 199.4 is in the last column.
    assert kept.tolist() == [0, 3, 7]
    assert counts == {"outside": 5, "edge": 0, "duplicates": 0, "kept": 3}


def test_boxes_crossing_the_edge_are_kept_unless_the_whole_box_is_needed():
    xy = [(10, 50), (9, 30), (190, 50), (191, 30), (100, 9), (100, 90), (-5, 50)]
    kept, counts = sanitize_coordinates(xy, SHAPE, box=20)
    assert kept.tolist() == [0, 1, 2, 3, 4, 5] and counts["edge"] == 0
    kept, counts = sanitize_coordinates(xy, SHAPE, box=20, whole_box=True)
    assert kept.tolist() == [0, 2, 5]
    assert counts == {"outside": 1, "edge": 3, "duplicates": 0, "kept": 3}


@pytest.mark.parametrize("box", [16, 17])
def test_whole_boxes_are_the_windows_extraction_cuts_whole(box):
    micrograph = np.zeros(SHAPE, dtype=np.float32)
    xy = np.random.default_rng(0).uniform(-5, 205, size=(400, 2)) * [1, 0.5]
    kept, _ = sanitize_coordinates(xy, SHAPE, box, whole_box=True, radius=0)
    _, whole = extract_windows(micrograph, xy, box)
    assert kept.tolist() == np.flatnonzero(whole).tolist()


def test_repeated_centres_are_merged_into_the_first():
    xy = [(50, 50), (50.5, 50.3), (52, 50), (50, 50), (51.6, 50),
          (10, 10), (10.8, 10), (11.6, 10)]  # a chain: the third is 1.6 px from the first
    kept, counts = sanitize_coordinates(xy, SHAPE)
    assert kept.tolist() == [0, 2, 5, 7]
    assert counts == {"outside": 0, "edge": 0, "duplicates": 4, "kept": 4}
    # Neighbours just beyond the radius are two particles.
    kept, _ = sanitize_coordinates([(20, 20), (20 + 1.01 * DUPLICATE_RADIUS, 20)], SHAPE)
    assert len(kept) == 2


def test_all_dropped_and_no_coordinates():
    kept, counts = sanitize_coordinates([(-1, -1), (500, 20), (-1, -1)], SHAPE)
    assert len(kept) == 0
    assert counts == {"outside": 3, "edge": 0, "duplicates": 0, "kept": 0}
    kept, counts = sanitize_coordinates(np.empty((0, 2)), SHAPE, 20, whole_box=True)
    assert len(kept) == 0 and counts["kept"] == 0


# ------------------------------------------------------- coordinate tables

@pytest.mark.parametrize("text, naming", [
    ("", ["is empty", "x,y"]),
    ("x,z\n1,2\n", ["columns x and y", "found x,z"]),
    ("x,y\n1,2\n3,abc\n", ["line 3", "abc"]),
    ("x,y\n1,2\nnan,4\n", ["line 3", "finite"]),
    ("x,y\n1,2\n\n5\n", ["line 4"]),  # blank lines count
    ("x,y\n1,2\n3,inf\n", ["line 3"]),
])
def test_bad_coordinate_tables_name_the_file_and_line(tmp_path, text, naming):
    path = tmp_path / "mic.csv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        read_coordinates(str(path))
    for word in [str(path)] + naming:
        assert word in str(error.value)


def test_a_binary_file_is_not_a_coordinate_table(tmp_path):
    path = tmp_path / "mic.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xd8\x00\x10")
    with pytest.raises(InputError, match="not a CSV text table"):
        read_coordinates(str(path))


def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "mic.csv"
    path.write_bytes("x,y,class\n1.5,2,top\n".encode("utf-8-sig"))
    assert read_coordinates(str(path)) == [{"x": 1.5, "y": 2.0, "class": "top"}]


# ------------------------------------------------------- train-picker input

@pytest.fixture
def annotated(tmp_path):
    """A 320 x 320 px simulated micrograph annotated with its particles plus
    two centres off it, a repeat and one by the edge; a second micrograph
    whose coordinates are all off it."""
    simulated = simulate.simulate_micrograph((320, 320), n_particles=8, pixel_size=4.0,
                                             snr=2.0, seed=0)
    paths = [str(tmp_path / ("mic%d.mrc" % i)) for i in range(2)]
    for path in paths:
        write_micrograph(path, simulated.image, 4.0)
    rows = [{"x": p["x"], "y": p["y"]} for p in simulated.particles]
    rows += [{"x": -20, "y": 50}, {"x": 330, "y": 50},
             {"x": rows[0]["x"] + 0.3, "y": rows[0]["y"]}, {"x": 4, "y": 100}]
    os.makedirs(tmp_path / "coords")
    write_table(str(tmp_path / "coords" / "mic0.csv"), ["x", "y"], rows)
    write_table(str(tmp_path / "coords" / "mic1.csv"), ["x", "y"],
                [{"x": 4 * r["x"] + 400, "y": 4 * r["y"]} for r in rows[:3]])
    return paths, tmp_path / "coords", len(simulated.particles)


def test_train_picker_drops_and_counts_bad_coordinates_and_trains(caplog, capsys, tmp_path,
                                                                 annotated):
    caplog.set_level(logging.INFO)
    paths, coords, n_particles = annotated
    out = tmp_path / "model"
    code = cli_main(["train-picker", "--micrographs", *paths, "--coords", str(coords),
                     "--box", "48", "--out", str(out), "--epochs", "1", "--working-size",
                     "0", "--no-preprocess", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    log = caplog.text
    assert ("%s: of %d coordinates, 2 off the micrograph (320 x 320 px) dropped, 1 repeated"
            % (paths[0], n_particles + 4)) in log
    assert "%s: of 3 coordinates, 3 off the micrograph" % paths[1] in log
    # The particle by the edge is kept: the particles and it.
    assert ("training coordinates: %d kept, 5 off the micrograph dropped, 1 repeated merged"
            % (n_particles + 1)) in log
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["micrographs_trained"] == 1 and metadata["micrographs_skipped"] == 1
    assert os.path.getsize(out / "model.pt") > 0


def test_train_picker_with_every_coordinate_off_is_an_error(capsys, tmp_path, annotated):
    paths, coords, _ = annotated
    out = tmp_path / "model"
    message = input_error(capsys, "train-picker", "--micrographs", paths[1], "--coords",
                          coords, "--box", 48, "--out", out, "--device", "cpu")
    for word in ("all 3 coordinates", str(coords), "320 x 320 px", "binned"):
        assert word in message
    assert not os.path.exists(out / "model.pt") and not os.path.exists(out / "dataset")


# ------------------------------------------ classification and pruner input

def windows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 32, 32)).astype(np.float32)


def test_classify2d_epochs_0_needs_an_initial_encoder(capsys, tmp_path):
    stack = str(tmp_path / "particles.mrcs")
    write_stack(stack, windows(12))
    message = input_error(capsys, "classify2d", "--particles", stack, "--classes", 2,
                          "--out", tmp_path / "classes", "--epochs", 0, "--device", "cpu")
    assert "--epochs 0" in message and "--initial-encoder" in message
    assert not os.path.exists(tmp_path / "classes")


@pytest.mark.parametrize("good, bad, extra, naming", [
    (MIN_CLASS_EXAMPLES, 1, [], "class 'ice' has only 1 examples"),
    (MIN_CLASS_EXAMPLES - 1, MIN_CLASS_EXAMPLES, [],
     "class 'particle' has only %d examples" % (MIN_CLASS_EXAMPLES - 1)),
    (MIN_CLASS_EXAMPLES, MIN_CLASS_EXAMPLES, ["--few-shot", 3], "few-shot 3"),
])
def test_train_pruner_needs_a_minimum_of_examples_per_class(capsys, tmp_path, good, bad,
                                                            extra, naming):
    write_stack(str(tmp_path / "good.mrcs"), windows(good))
    write_stack(str(tmp_path / "ice.mrcs"), windows(bad, seed=1))
    message = input_error(capsys, "train-pruner", "--good", tmp_path / "good.mrcs", "--bad",
                          tmp_path / "ice.mrcs", "--out", tmp_path / "pruner", *extra,
                          "--device", "cpu")
    assert naming in message and "at least %d" % MIN_CLASS_EXAMPLES in message
    assert not os.path.exists(tmp_path / "pruner" / "model.pt")


class TestProtocolForms(BaseTest):
    """The protocols refuse the same inputs in their forms, before a run."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("three")
        os.makedirs(folder)
        write_stack(os.path.join(folder, "three.mrcs"), windows(3), 2.0)
        prot = cls.newProtocol(ProtImportParticles,
                               importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                               filesPath=folder, filesPattern="three.mrcs", samplingRate=2.0,
                               voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1)
        cls.particles = cls.launchProtocol(prot).outputParticles

    def test_pruner_training_needs_a_minimum_of_examples_per_class(self):
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                    inputGood=self.particles, junkNames="ice",
                                    initialWeights=0, fewShot=4)
        training.inputBad.append(pwobj.Pointer(self.particles))
        errors = " ".join(training.validate())
        self.assertIn("Good examples (", errors)
        self.assertIn("ice (", errors)
        self.assertIn("has 3 examples: each class needs at least %d" % MIN_CLASS_EXAMPLES,
                      errors)
        self.assertIn("few-shot) is 4", errors)

    def test_classification_with_0_epochs_needs_an_initial_encoder(self):
        classify = self.newProtocol(CryoPruneProtContrastive2D, inputParticles=self.particles,
                                    numberOfClasses=2, phaseFlip=False, epochs=0)
        self.assertIn("Epochs 0 uses an initial encoder", " ".join(classify.validate()))


# ------------------------------------------------------------- simulation

@pytest.mark.parametrize("snr", [0, -1.0, float("nan")])
def test_simulation_refuses_an_snr_that_is_not_positive(snr):
    with pytest.raises(InputError, match="snr must be above 0"):
        simulate.simulate_micrograph((256, 256), n_particles=2, snr=snr)
    with pytest.raises(InputError, match="snr must be above 0"):
        simulate.simulate_particle_stack(simulate.barrel(), [(0, 0)], 2, box=32, snr=snr)


def test_simulation_refuses_a_micrograph_too_small_for_its_particles():
    with pytest.raises(InputError, match="64 x 96 px micrograph is too small"):
        simulate.simulate_micrograph((96, 64), pixel_size=3.0)
    with pytest.raises(InputError, match="pixel_size must be above 0"):
        simulate.simulate_micrograph((256, 256), pixel_size=0)
