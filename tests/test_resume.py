"""Resumable training: train-picker, train-pruner and classify2d save their
state after every epoch; a run stopped by SIGTERM and started again with
--resume continues at the next epoch and ends as an uninterrupted run does,
its state removed; Scipion's Continue of a stopped training resumes it."""
import contextlib
import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from pyworkflow.object import Pointer
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.protocols import ProtImportParticles

from cryoprune_scipion.cli import main as cli_main
from cryoprune_scipion.engine import picking
from cryoprune_scipion.engine.io import write_micrograph, write_stack, write_table
from cryoprune_scipion.engine.simulate import (barrel, simulate_micrograph,
                                               simulate_particle_stack)
from cryoprune_scipion.protocols import CryoPruneProtPickerOptimizerTraining


@pytest.fixture(autouse=True)
def info_log(caplog):
    caplog.set_level(logging.INFO)


class _SigtermOn(logging.Handler):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def emit(self, record):
        if self.text in record.getMessage():
            os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def sigterm_after(text):
    """SIGTERM to this process when a log line holds `text`, as `kill` or a
    queue's time limit would send it; `cli.main` handles it."""
    handler = _SigtermOn(text)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


def epochs_logged(text, epochs):
    return [int(e) for e in re.findall(r"epoch (\d+)/%d " % epochs, text)]


def after(text, marker):
    assert marker in text, text
    return text[text.index(marker):]


# ------------------------------------------------------------------ pruner

def windows(kind, n, seed, box=32):
    """Noisy discs (particles) or rings (ice)."""
    rng = np.random.default_rng(seed)
    r = np.hypot(*(np.mgrid[:box, :box] - box / 2))
    image = (r < 7) if kind == "particle" else (r > 9) & (r < 13)
    return 2 * image + rng.normal(size=(n, box, box)).astype(np.float32)


@pytest.fixture
def pruner_stacks(tmp_path):
    good, ice = str(tmp_path / "good.mrcs"), str(tmp_path / "ice.mrcs")
    write_stack(good, windows("particle", 20, 0))
    write_stack(ice, windows("ice", 20, 1))
    return ["--good", good, "--bad", ice, "--input-size", "32", "--batch", "16",
            "--device", "cpu"]


def test_train_pruner_resumes_at_the_next_epoch_and_ends_as_without_a_stop(
        pruner_stacks, tmp_path, caplog, capsys):
    # Without saved state, --resume starts from the beginning.
    whole = tmp_path / "whole"
    assert cli_main(["train-pruner", *pruner_stacks, "--epochs", "4", "--out", str(whole),
                     "--resume"]) == 0
    assert epochs_logged(caplog.text, 4) == [1, 2, 3, 4]
    assert sorted(os.listdir(whole)) == ["model.json", "model.pt"]  # state removed

    out = tmp_path / "stopped"
    with sigterm_after("epoch 2/4"):
        assert cli_main(["train-pruner", *pruner_stacks, "--epochs", "4",
                         "--out", str(out)]) == 143
    assert os.listdir(out) == ["checkpoint.pt"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    assert {"network", "optimizer", "scheduler", "rng", "generator", "best"} <= set(state)

    # Other settings than the stopped run's: refused, the state kept.
    capsys.readouterr()
    assert cli_main(["train-pruner", *pruner_stacks, "--epochs", "5", "--out", str(out),
                     "--resume"]) == 2
    error = capsys.readouterr().err
    assert "settings.epochs: 4 then, 5 now" in error and "checkpoint.pt" in error
    assert os.listdir(out) == ["checkpoint.pt"]

    caplog.clear()
    assert cli_main(["train-pruner", *pruner_stacks, "--epochs", "4", "--out", str(out),
                     "--resume"]) == 0
    assert "2 of 4 epochs done" in caplog.text
    assert epochs_logged(caplog.text, 4) == [3, 4]
    assert sorted(os.listdir(out)) == ["model.json", "model.pt"]
    resumed = json.load(open(out / "model.json"))
    uninterrupted = json.load(open(whole / "model.json"))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    for key in ("train_loss", "val_loss"):  # the same training, stopped or not
        np.testing.assert_allclose([r[key] for r in resumed["history"]],
                                   [r[key] for r in uninterrupted["history"]], rtol=1e-5)
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]


# -------------------------------------------------------------- classify2d

def test_classify2d_resumes_at_the_next_epoch_and_gives_the_same_classes(tmp_path, caplog):
    images, _, _, _, _ = simulate_particle_stack(
        barrel(radius=40.0, height=60.0, symmetry=5), [(0.0, 0.0), (0.0, 90.0)], 64,
        box=48, pixel_size=3.0, snr=2.0, max_shift=2.0, seed=4)
    stack = str(tmp_path / "particles.mrcs")
    write_stack(stack, images)
    command = ["classify2d", "--particles", stack, "--classes", "2", "--epochs", "3",
               "--batch", "32", "--working-size", "32", "--feature-rotations", "2",
               "--align-iterations", "1", "--device", "cpu"]
    whole, out = tmp_path / "whole", tmp_path / "stopped"
    assert cli_main(command + ["--out", str(whole)]) == 0

    with sigterm_after("epoch 2/3"):
        assert cli_main(command + ["--out", str(out)]) == 143
    assert os.listdir(out) == ["checkpoint.pt"]  # no results, no working stack
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["losses"]) == 2
    assert {"encoder", "head", "optimiser", "schedule"} <= set(state)

    caplog.clear()
    assert cli_main(command + ["--out", str(out), "--resume"]) == 0
    assert "2 of 3 epochs done" in caplog.text
    assert epochs_logged(caplog.text, 3) == [3]
    assert "checkpoint.pt" not in os.listdir(out)
    for name in ("classes.csv", "alignment.csv"):
        assert (out / name).read_text() == (whole / name).read_text()
    assert (json.load(open(out / "model.json"))["final_loss"]
            == pytest.approx(json.load(open(whole / "model.json"))["final_loss"], rel=1e-5))


# ------------------------------------------------------------------ picker

@pytest.fixture
def annotated_micrographs(tmp_path):
    micrographs = []
    os.makedirs(tmp_path / "coords")
    for index in range(3):
        simulated = simulate_micrograph((256, 256), n_particles=8, snr=2.0, seed=index)
        path = str(tmp_path / ("mic%d.mrc" % index))
        write_micrograph(path, simulated.image, simulated.pixel_size)
        write_table(str(tmp_path / "coords" / ("mic%d.csv" % index)), ["x", "y"],
                    simulated.particles)
        micrographs.append(path)
    return ["--micrographs", *micrographs, "--coords", str(tmp_path / "coords"),
            "--box", "40", "--working-size", "256", "--epochs", "5", "--threads", "2",
            "--device", "cpu"]


def test_train_picker_killed_by_sigterm_resumes_on_its_dataset(
        annotated_micrographs, tmp_path, caplog, monkeypatch):
    out = tmp_path / "model"
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        job = subprocess.Popen([sys.executable, "-m", "cryoprune_scipion.cli",
                                "train-picker", *annotated_micrographs, "--out", str(out)],
                               stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "epoch 1/5" not in log_path.read_text():
            assert job.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.1)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=60) == 143, log_path.read_text()
    assert sorted(os.listdir(out)) == ["dataset", "training"]
    assert os.path.isfile(out / "dataset" / "dataset.json")
    done = torch.load(out / "training" / "weights" / "last.pt", weights_only=False)["epoch"] + 1
    assert 1 <= done < 5

    def rebuilt(*args, **kwargs):
        raise AssertionError("the dataset was written again")
    monkeypatch.setattr(picking, "write_yolo_dataset", rebuilt)
    assert cli_main(["train-picker", *annotated_micrographs, "--out", str(out),
                     "--resume"]) == 0
    assert "is complete and kept" in caplog.text
    resumed = after(caplog.text, "%d of 5 epochs done" % done)
    assert epochs_logged(resumed, 5) == list(range(done + 1, 6))
    for figure in ("box_loss", "precision", "recall", "mAP50", "left"):
        assert figure in resumed
    assert sorted(os.listdir(out)) == ["metrics.csv", "model.json", "model.pt"]
    with open(out / "metrics.csv") as f:
        assert [int(float(row["epoch"])) for row in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    model = torch.load(out / "model.pt", weights_only=False)
    assert model["optimizer"] is None and model["train_results"]["epoch"] == [1, 2, 3, 4, 5]
    metadata = json.load(open(out / "model.json"))
    assert metadata["kind"] == "picker" and 1 <= metadata["final_metrics"]["epoch"] <= 5


def test_picker_state_of_a_run_stopped_while_saving(tmp_path):
    """Metrics of an epoch whose weights were not saved are dropped (that
    epoch is trained again); unreadable weights mean training from the start."""
    results = tmp_path / "results.csv"
    results.write_text("epoch,time,loss\n1,1.0,0.9\n2,2.0,0.8\n3,3.0,0.7\n")
    picking._drop_unsaved_epochs(str(results), 2)
    assert results.read_text() == "epoch,time,loss\n1,1.0,0.9\n2,2.0,0.8\n"
    run_dir = tmp_path / "training"
    os.makedirs(run_dir / "weights")
    (run_dir / "weights" / "last.pt").write_bytes(b"cut short")
    assert picking._saved_training(str(run_dir), 5) == 0
    assert not os.path.exists(run_dir)


# ---------------------------------------------------------------- Scipion

class TestContinueStoppedTraining(BaseTest):
    """Scipion's Stop kills the training job (SIGKILL); Continue runs the
    training step again, which resumes from the state the job saved."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = cls.getOutputPath("stacks")
        os.makedirs(folder)
        cls.imports = {}
        for seed, kind in enumerate(("particle", "ice")):
            write_stack(os.path.join(folder, kind + ".mrcs"), windows(kind, 20, seed), 4.0)
            cls.imports[kind] = cls.launchProtocol(cls.newProtocol(
                ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                filesPath=folder, filesPattern=kind + ".mrcs", samplingRate=4.0,
                voltage=300, sphericalAberration=2.7, amplitudeContrast=0.1, objLabel=kind))

    def test_continue_resumes_the_stopped_training(self):
        epochs = 5
        training = self.newProtocol(CryoPruneProtPickerOptimizerTraining,
                                    inputGood=self.imports["particle"].outputParticles,
                                    junkNames="ice", initialWeights=0, inputSize=32,
                                    epochs=epochs, batchSize=16, useGpu=False,
                                    numberOfThreads=2)
        training.inputBad.append(Pointer(self.imports["ice"], extended="outputParticles"))
        self.proj.launchProtocol(training, wait=False)
        checkpoint = training._getExtraPath("model", "checkpoint.pt")
        deadline = time.time() + 120
        while not os.path.exists(checkpoint):
            self.assertLess(time.time(), deadline, "no checkpoint.pt from the training")
            time.sleep(0.1)
        self.proj.stopProtocol(training)
        self.assertTrue(training.isAborted())
        done = torch.load(checkpoint, weights_only=True)["epoch"]
        self.assertLess(done, epochs)

        self.launchProtocol(training)  # Continue: the run mode stays "resume"
        log = after(open(training.getStdoutLog()).read(), "%d of %d epochs done"
                    % (done, epochs))
        self.assertEqual(epochs_logged(log, epochs), list(range(done + 1, epochs + 1)))
        history = training.outputModel.getMetadata()["history"]
        self.assertEqual([r["epoch"] for r in history], list(range(1, epochs + 1)))
        self.assertFalse(os.path.exists(checkpoint))
