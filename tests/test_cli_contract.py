"""The output contract and the error contract of the `cryoprune` commands:
inputs and files the command did not make are never replaced without
--overwrite, outputs are complete or absent, and every user error is exit
code 2 with one `cryoprune COMMAND: error:` line, never a traceback."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cryoprune_scipion.cli import main as cli_main
from cryoprune_scipion.engine import pruning
from cryoprune_scipion.engine.io import write_micrograph, write_stack, write_table

BOX = 32


def digest(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def run_cli(capsys, *argv):
    """(exit code, stderr) of one in-process command."""
    code = cli_main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_input_error(capsys, command, *argv, naming=()):
    code, err = run_cli(capsys, command, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("cryoprune %s: error: " % command), err
    assert "Traceback" not in err
    for word in naming:
        assert str(word) in lines[0], (word, lines[0])
    return lines[0]


def fake_model(folder, kind, weights=b"not a checkpoint", **metadata):
    """A model folder whose model.json says `kind` and whose weights are
    `weights` (bytes): enough for every check made before the weights load."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(dict(metadata, kind=kind), f)
    path = os.path.join(folder, "encoder.pt" if kind == "encoder" else "model.pt")
    with open(path, "wb") as f:
        f.write(weights)
    return path


@pytest.fixture(scope="module")
def pruner(tmp_path_factory):
    """A real pruner model (untrained: its scores do not matter here)."""
    folder = str(tmp_path_factory.mktemp("pruner"))
    network = pruning.build_network("resnet18", 2)
    pruning.save(network, {"kind": "pruner", "classes": ["particle", "ice"],
                           "box_size": BOX, "backbone": "resnet18", "input_size": BOX},
                 folder)
    return os.path.join(folder, "model.pt")


@pytest.fixture
def stack(tmp_path):
    path = str(tmp_path / "windows.mrcs")
    write_stack(path, np.random.default_rng(0).normal(size=(12, BOX, BOX)))
    return path


@pytest.fixture
def micrograph(tmp_path):
    """One small micrograph with a coordinate file in coords/."""
    path = str(tmp_path / "mic0.mrc")
    write_micrograph(path, np.random.default_rng(1).normal(size=(256, 256)), 1.0)
    os.makedirs(tmp_path / "coords")
    write_table(str(tmp_path / "coords" / "mic0.csv"), ["x", "y"],
                [{"x": 100, "y": 120}, {"x": 60, "y": 40}])
    return path


# ----------------------------------------------------- outputs never clobber

def test_prune_refuses_to_write_over_its_input_stack_even_with_overwrite(capsys, pruner,
                                                                        stack):
    before = digest(stack)
    for extra in ([], ["--overwrite"]):
        assert_input_error(capsys, "prune", "--model", pruner, "--particles", stack,
                           "--out", stack, *extra, naming=[stack])
    assert digest(stack) == before


def test_prune_writes_a_complete_table_and_refuses_to_replace_it(capsys, pruner, stack,
                                                                 tmp_path):
    out = tmp_path / "new" / "folder" / "scores.csv"  # missing folders are made
    code, err = run_cli(capsys, "prune", "--model", pruner, "--particles", stack,
                        "--out", out)
    assert code == 0, err
    rows = out.read_text().splitlines()
    assert rows[0] == "index,score,label" and len(rows) == 13
    assert not os.path.exists(str(out) + ".partial")
    before = digest(out)
    assert_input_error(capsys, "prune", "--model", pruner, "--particles", stack,
                       "--out", out, naming=[out.parent, "--overwrite"])
    assert digest(out) == before
    code, _ = run_cli(capsys, "prune", "--model", pruner, "--particles", stack,
                      "--out", out, "--overwrite")
    assert code == 0


def test_prune_refuses_a_folder_as_its_output_file(capsys, pruner, stack, tmp_path):
    assert_input_error(capsys, "prune", "--model", pruner, "--particles", stack,
                       "--out", tmp_path, naming=[tmp_path, "folder"])


def test_pick_keeps_the_users_files_in_its_output_folder(capsys, micrograph, tmp_path):
    annotation = tmp_path / "coords" / "mic0.csv"
    before = digest(annotation)
    model = fake_model(str(tmp_path / "model"), "picker")
    assert_input_error(capsys, "pick", "--model", model, "--micrographs", micrograph,
                       "--out", tmp_path / "coords", naming=["mic0.csv", "--overwrite"])
    assert digest(annotation) == before


def test_pick_refuses_two_micrographs_of_one_name(capsys, micrograph, tmp_path):
    os.makedirs(tmp_path / "other")
    twin = str(tmp_path / "other" / "mic0.mrc")
    write_micrograph(twin, np.zeros((64, 64)), 1.0)
    model = fake_model(str(tmp_path / "model"), "picker")
    assert_input_error(capsys, "pick", "--model", model, "--micrographs", micrograph, twin,
                       "--out", tmp_path / "picks", naming=[micrograph, twin])
    assert not os.path.exists(tmp_path / "picks")


def test_train_picker_keeps_a_users_folders_and_an_earlier_model(capsys, micrograph,
                                                                tmp_path):
    out = tmp_path / "out"
    for name in ("dataset", "training"):
        os.makedirs(out / name)
        (out / name / "notes.txt").write_text("the user's")
    (out / "model.pt").write_bytes(b"an earlier model")
    assert_input_error(capsys, "train-picker", "--micrographs", micrograph, "--coords",
                       tmp_path / "coords", "--box", 40, "--out", out,
                       naming=["model.pt", "--overwrite"])
    (out / "model.pt").unlink()
    message = assert_input_error(capsys, "train-picker", "--micrographs", micrograph,
                                 "--coords", tmp_path / "coords", "--box", 40, "--out",
                                 out, naming=["dataset", "--resume"])
    assert "--overwrite" in message
    assert (out / "dataset" / "notes.txt").read_text() == "the user's"
    assert (out / "training" / "notes.txt").read_text() == "the user's"


def test_an_output_folder_that_holds_an_input_is_never_removed(capsys, tmp_path):
    """--overwrite would remove OUT/dataset, where the micrograph lives."""
    os.makedirs(tmp_path / "out" / "dataset")
    mic = str(tmp_path / "out" / "dataset" / "mic0.mrc")
    write_micrograph(mic, np.zeros((64, 64)), 1.0)
    assert_input_error(capsys, "train-picker", "--micrographs", mic, "--coords", tmp_path,
                       "--box", 20, "--out", tmp_path / "out", "--overwrite",
                       naming=["would replace the input", mic])
    assert os.path.isfile(mic)


def test_output_folder_that_is_a_file_or_cannot_be_made(capsys, micrograph, tmp_path):
    model = fake_model(str(tmp_path / "model"), "picker")
    assert_input_error(capsys, "pick", "--model", model, "--micrographs", micrograph,
                       "--out", micrograph, naming=[micrograph, "existing file"])
    assert_input_error(capsys, "pick", "--model", model, "--micrographs", micrograph,
                       "--out", "/proc/cryoprune-picks", naming=["/proc/cryoprune-picks"])


def test_a_failed_run_leaves_no_results_and_no_folder(capsys, micrograph, tmp_path):
    """The model is found truncated after the output folder was declared."""
    model = fake_model(str(tmp_path / "model"), "picker", preprocessing={})
    assert_input_error(capsys, "pick", "--model", model, "--micrographs", micrograph,
                       "--out", tmp_path / "picks", naming=[model, "truncated"])
    assert not os.path.exists(tmp_path / "picks")


# --------------------------------------------------- errors, not tracebacks

@pytest.mark.parametrize("given, command", [("pruner", "pick"), ("encoder", "pick"),
                                            ("picker", "prune")])
def test_a_model_of_the_wrong_kind_names_its_kind_and_command(capsys, tmp_path, stack,
                                                              micrograph, given, command):
    model = fake_model(str(tmp_path / given), given)
    inputs = (["--micrographs", micrograph] if command == "pick"
              else ["--particles", stack])
    message = assert_input_error(capsys, command, "--model", model, *inputs, "--out",
                                 tmp_path / "out", naming=[model, "a %s model" % given])
    assert ("train-picker" if command == "pick" else "train-pruner") in message


def test_truncated_weights_are_reported_by_file(capsys, tmp_path, stack, pruner):
    with open(pruner, "rb") as f:
        head = f.read(4096)
    truncated = fake_model(str(tmp_path / "pruner"), "pruner", head, backbone="resnet18")
    assert_input_error(capsys, "prune", "--model", truncated, "--particles", stack,
                       "--out", tmp_path / "scores.csv", naming=[truncated])
    encoder = fake_model(str(tmp_path / "encoder"), "encoder", head,
                         architecture="cryoprune-cnn-v1", feature_size=128, working_size=32)
    assert_input_error(capsys, "classify2d", "--particles", stack, "--classes", 2,
                       "--initial-encoder", encoder, "--out", tmp_path / "classes",
                       naming=[encoder, "truncated"])
    assert not os.path.exists(tmp_path / "classes")


def test_an_encoder_is_not_a_pruner(capsys, tmp_path, stack):
    encoder = fake_model(str(tmp_path / "encoder"), "encoder")
    assert_input_error(capsys, "train-pruner", "--good", stack, "--bad", stack,
                       "--initial-weights", encoder, "--out", tmp_path / "out",
                       naming=[encoder, "encoder", "train-pruner"])


@pytest.mark.parametrize("command, argv, option", [
    ("prune", ["--model", "m.pt", "--particles", "p.mrcs", "--out", "s.csv", "--batch", 0],
     "--batch"),
    ("prune", ["--model", "m.pt", "--particles", "p.mrcs", "--out", "s.csv", "--tta", 3],
     "--tta"),
    ("train-picker", ["--micrographs", "a.mrc", "--coords", ".", "--box", 40, "--out",
                      "o", "--epochs", 0], "--epochs"),
    ("train-picker", ["--micrographs", "a.mrc", "--coords", ".", "--box", 40, "--out",
                      "o", "--val-fraction", 1.5], "--val-fraction"),
    ("demo", ["--out", "o", "--snr", 0], "--snr"),
    ("demo", ["--out", "o", "--micrographs", 2], "--micrographs"),
    ("pick", ["--model", "m.pt", "--micrographs", "a.mrc", "--out", "o", "--threshold",
              "high"], "--threshold"),
    ("classify2d", ["--particles", "p.mrcs", "--classes", 0, "--out", "o"], "--classes"),
])
def test_bad_numbers_are_one_line_errors(capsys, monkeypatch, tmp_path, command, argv,
                                        option):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main([command] + [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("cryoprune %s: error: " % command), err
    assert option in err[0]
    assert os.listdir(tmp_path) == []


def test_a_missing_gpu_is_found_before_anything_is_written(capsys, micrograph, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_input_error(capsys, "train-picker", "--micrographs", micrograph, "--coords",
                       tmp_path / "coords", "--box", 40, "--out", tmp_path / "model",
                       "--device", 7, naming=["--device 7", "--device cpu"])
    assert not os.path.exists(tmp_path / "model")


def test_cpu_fallback_runs_on_the_cpu_with_a_warning(caplog, pruner, stack, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = cli_main(["prune", "--model", pruner, "--particles", stack, "--out",
                     str(tmp_path / "scores.csv"), "--device", "0", "--cpu-fallback"])
    assert code == 0
    assert "running on the CPU" in caplog.text
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 13


# ------------------------------------------------------------- interruption

def test_sigterm_leaves_no_results_and_no_working_stack(tmp_path):
    """classify2d into a folder with an earlier run, --overwrite, killed with
    SIGTERM while training: the earlier results are gone (removed before the
    run), no new ones appear, and the working stack is removed."""
    path = str(tmp_path / "particles.mrcs")
    write_stack(path, np.random.default_rng(2).normal(size=(512, 48, 48)))
    out = tmp_path / "classes"
    os.makedirs(out)
    (out / "classes.csv").write_text("index,class\n0,1\n")
    log = open(tmp_path / "log.txt", "w")
    job = subprocess.Popen([sys.executable, "-m", "cryoprune_scipion.cli", "classify2d",
                            "--particles", path, "--classes", "2", "--out", str(out),
                            "--epochs", "200", "--batch", "64", "--overwrite"],
                           stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while "epoch 1/" not in (tmp_path / "log.txt").read_text() and time.time() < deadline:
        assert job.poll() is None, (tmp_path / "log.txt").read_text()
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 143
    log.close()
    assert "interrupted" in (tmp_path / "log.txt").read_text()
    left = sorted(os.listdir(out))
    assert not [name for name in left if name.endswith((".csv", ".mrcs", ".npy", ".partial",
                                                        "encoder.pt", ".json"))], left
