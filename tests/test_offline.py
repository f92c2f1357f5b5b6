"""No `cryoprune` command opens a network connection.

Each command runs as a subprocess whose sockets refuse every connection and
name lookup (a sitecustomize module on PYTHONPATH) and record the attempt in
a file: ultralytics catches the refusals and carries on, so only the record
shows that it tried."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cryoprune_scipion.engine.io import write_micrograph, write_stack, write_table

NETWORK_GUARD = '''
import os
import socket
import traceback

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _refuse(call, target):
    with open(os.environ["CRYOPRUNE_NETWORK_ATTEMPTS"], "a") as log:
        log.write("%s %r\\n%s\\n" % (call, target, "".join(traceback.format_stack()[:-2])))
    raise OSError("network blocked by the test: %s %r" % (call, target))


def connect(self, address):
    if self.family == socket.AF_UNIX:  # local pipes, as between data loader workers
        return _connect(self, address)
    _refuse("connect", address)


def connect_ex(self, address):
    if self.family == socket.AF_UNIX:
        return _connect_ex(self, address)
    _refuse("connect_ex", address)


def create_connection(address, *args, **kwargs):
    _refuse("create_connection", address)


def getaddrinfo(host, *args, **kwargs):
    _refuse("getaddrinfo", host)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
'''


@pytest.fixture
def offline(tmp_path):
    """run(command, *argv): runs `cryoprune COMMAND ARGV` with the network
    blocked and asserts that it succeeded without trying to reach it."""
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(NETWORK_GUARD)
    attempts = tmp_path / "network-attempts.txt"
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(
                       filter(None, [str(guard_dir), os.environ.get("PYTHONPATH")])),
                   CRYOPRUNE_NETWORK_ATTEMPTS=str(attempts),
                   # a fresh ultralytics folder, without a font from an earlier run
                   YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
                   # a user's key would make ultralytics stream training to its Platform
                   ULTRALYTICS_API_KEY="a-users-key")
    # The command must keep itself offline: not with the variable the test
    # setup gives, nor with ultralytics' own telemetry switch-off under pytest.
    for name in ("YOLO_OFFLINE", "PYTEST_CURRENT_TEST"):
        environ.pop(name, None)

    def run(command, *argv):
        job = subprocess.run([sys.executable, "-m", "cryoprune_scipion.cli", command,
                              *map(str, argv), "--device", "cpu"],
                             env=environ, cwd=tmp_path, capture_output=True, text=True)
        assert job.returncode == 0, job.stderr
        tried = attempts.read_text() if attempts.exists() else ""
        assert not tried, "`cryoprune %s` tried to reach the network:\n%s" % (command, tried)
    return run


def test_training_and_picking_stay_offline(offline, tmp_path):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "coords")
    micrographs = []
    for index in range(2):
        image = rng.normal(size=(256, 256))
        rows = [{"x": x, "y": y} for x, y in [(60, 60), (150, 80), (100, 190)]]
        for row in rows:
            image[row["y"] - 8:row["y"] + 8, row["x"] - 8:row["x"] + 8] += 3
        micrographs.append(str(tmp_path / ("mic%d.mrc" % index)))
        write_micrograph(micrographs[-1], image, 1.0)
        write_table(str(tmp_path / "coords" / ("mic%d.csv" % index)), ["x", "y"], rows)
    offline("train-picker", "--micrographs", *micrographs, "--coords", tmp_path / "coords",
            "--box", 16, "--out", tmp_path / "picker", "--epochs", 1)
    offline("pick", "--model", tmp_path / "picker" / "model.pt", "--micrographs",
            *micrographs, "--out", tmp_path / "picks")
    assert sorted(os.listdir(tmp_path / "picks")) == ["mic0.csv", "mic1.csv"]


def test_pruning_and_classification_stay_offline(offline, tmp_path):
    rng = np.random.default_rng(1)
    for name in ("good", "ice"):
        write_stack(str(tmp_path / (name + ".mrcs")), rng.normal(size=(16, 32, 32)))
    offline("train-pruner", "--good", tmp_path / "good.mrcs", "--bad", tmp_path / "ice.mrcs",
            "--out", tmp_path / "pruner", "--epochs", 1, "--input-size", 32, "--batch", 8)
    offline("prune", "--model", tmp_path / "pruner" / "model.pt", "--particles",
            tmp_path / "good.mrcs", "--out", tmp_path / "scores.csv")
    offline("classify2d", "--particles", tmp_path / "good.mrcs", "--classes", 2, "--out",
            tmp_path / "classes", "--epochs", 1, "--batch", 8)
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 17
