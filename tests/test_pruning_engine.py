"""The PickerOptimizer engine and its CLI on small windows with a known
answer: bright discs (particles) against rings (ice) and stripes (carbon)."""
import csv
import os

import numpy as np
import pytest

from cryoprune_scipion.cli import main as cli_main
from cryoprune_scipion.engine import pruning
from cryoprune_scipion.engine.dihedral import dihedral_copies, dihedral_copy
from cryoprune_scipion.engine.io import InputError, write_stack
from cryoprune_scipion.engine.windows import extract_windows

BOX = 32
SETTINGS = dict(input_size=32, epochs=4, batch=16, seed=0)


def shapes(kind, n, seed):
    """Noisy windows of one shape, randomly shifted by up to 2 px."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, BOX, BOX), dtype=np.float32)
    for i in range(n):
        dy, dx = rng.uniform(-2, 2, 2)
        yy, xx = np.mgrid[:BOX, :BOX] - BOX / 2
        r = np.hypot(yy - dy, xx - dx)
        if kind == "particle":
            image = (r < 7).astype(float)
        elif kind == "ice":
            image = ((r > 9) & (r < 13)).astype(float)
        else:
            image = (np.sin(xx / 2.0 + rng.uniform(0, 6)) > 0).astype(float)
        out[i] = 2 * image + rng.normal(size=(BOX, BOX))
    return out


@pytest.fixture(scope="module")
def trained():
    dataset = pruning.Dataset(["particle", "ice", "carbon"],
                              [shapes(k, 40, s) for s, k in enumerate(("particle", "ice",
                                                                       "carbon"))])
    return pruning.train(dataset, pruning.TrainSettings(**SETTINGS))


def test_extract_windows_cuts_exact_pixels_and_flags_edges():
    micrograph = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    windows, inside = extract_windows(micrograph, [[60, 50], [5, 50], [119, 99]], 16)
    assert inside.tolist() == [True, False, False]
    np.testing.assert_array_equal(windows[0], micrograph[42:58, 52:68])
    # The part of the edge window inside the micrograph is exact, the rest the mean.
    np.testing.assert_array_equal(windows[1][:, 3:], micrograph[42:58, 0:13])
    assert np.allclose(windows[1][:, :3], micrograph.mean())
    reflected, _ = extract_windows(micrograph, [[5, 50]], 16, pad="reflect")
    np.testing.assert_array_equal(reflected[0][:, 2], micrograph[42:58, 1])


def test_both_branches_receive_gradient():
    import torch
    import torch.nn.functional as F
    network = pruning.build_network("resnet18", 3)
    x = torch.randn(4, 3, 32, 32)
    target = torch.tensor([0, 1, 2, 0])
    main, aux = network(x)
    F.cross_entropy(aux, target).backward()
    conv = network.aux_reduce[0].weight.grad
    assert conv is not None and conv.abs().sum() > 0
    assert network.aux_head.weight.grad.abs().sum() > 0
    # The auxiliary loss alone reaches the shared backbone.
    assert network.features[0].weight.grad.abs().sum() > 0
    network.zero_grad()
    main, aux = network(x)
    F.cross_entropy(main, target).backward()
    assert network.head.weight.grad.abs().sum() > 0
    assert network.features[0].weight.grad.abs().sum() > 0


def test_separable_case_reaches_high_accuracy(trained):
    network, metadata = trained
    assert metadata["classes"] == ["particle", "ice", "carbon"]
    assert metadata["box_size"] == BOX and metadata["input_size"] == 32
    assert metadata["validation"]["n"] == 24
    test = np.concatenate([shapes(k, 30, 10 + s) for s, k in
                           enumerate(("particle", "ice", "carbon"))])
    truth = np.repeat([0, 1, 2], 30)
    probabilities = pruning.predict_probabilities(network, test, 32)
    metrics = pruning.classification_metrics(probabilities, truth, metadata["classes"])
    assert metrics["accuracy"] >= 0.9
    assert metrics["f1"] >= 0.85
    assert metrics["roc_auc"] >= 0.95
    assert np.sum(metrics["confusion"]) == 90


def test_validation_windows_are_kept_with_their_true_class(trained):
    """What the pruning threshold wizard draws: each validation window's
    particle probability and true class, as the validation metrics saw them."""
    _, metadata = trained
    windows = metadata["validation_windows"]
    probability = np.array(windows["particle_probability"])
    truth = np.array(windows["class_index"]) == 0
    assert len(probability) == metadata["validation"]["n"] == 24
    assert metadata["validation"]["test_time_copies"] == pruning.TTA  # as pruning scores
    assert np.bincount(windows["class_index"], minlength=3).min() > 0
    assert np.all((probability >= 0) & (probability <= 1))
    assert pruning.roc_auc(truth, probability) == pytest.approx(
        metadata["validation"]["roc_auc"], abs=1e-3)


def test_test_time_copies_average_the_turned_and_mirrored_windows(trained):
    network, _ = trained
    windows = np.concatenate([shapes("particle", 3, 21), shapes("ice", 3, 22)])
    copies = [np.ascontiguousarray(dihedral_copy(windows, turns, mirror))
              for turns, mirror in dihedral_copies(4)]
    single = [pruning.predict_probabilities(network, c, 32) for c in copies]
    np.testing.assert_allclose(pruning.predict_probabilities(network, windows, 32, copies=4),
                               np.mean(single, axis=0), atol=1e-5)
    assert not np.allclose(single[0], single[2], atol=1e-3)  # the copies differ
    # Eight copies are the whole group: a quarter-turned window scores the same.
    turned = np.ascontiguousarray(np.rot90(windows, 1, axes=(1, 2)))
    np.testing.assert_allclose(pruning.predict_probabilities(network, turned, 32, copies=8),
                               pruning.predict_probabilities(network, windows, 32, copies=8),
                               atol=1e-5)


def test_save_and_load_give_identical_scores(trained, tmp_path):
    network, metadata = trained
    path = pruning.save(network, metadata, str(tmp_path))
    assert os.path.exists(tmp_path / "model.json")
    loaded, loaded_metadata = pruning.load(path)
    assert loaded_metadata["classes"] == metadata["classes"]
    test = shapes("particle", 8, 99)
    np.testing.assert_array_equal(pruning.predict_probabilities(network, test, 32),
                                  pruning.predict_probabilities(loaded, test, 32))


def test_initial_weights_from_backbone_file_and_from_earlier_pruner(trained, tmp_path):
    import torch
    import torchvision
    backbone = torchvision.models.resnet18(weights=None)
    torch.save(backbone.state_dict(), tmp_path / "resnet18.pth")
    settings = pruning.TrainSettings(input_size=32)
    network = pruning.initial_network(settings, 2, pruning.load_initial_weights(
        str(tmp_path / "resnet18.pth"), "resnet18"))
    assert torch.equal(network.features[0].weight, backbone.conv1.weight)
    earlier = pruning.save(*trained, str(tmp_path / "earlier"))
    network = pruning.initial_network(settings, 3,
                                      pruning.load_initial_weights(earlier, "resnet18"))
    assert torch.equal(network.head.weight, trained[0].head.weight)
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt"):
        pruning.load_initial_weights(str(tmp_path / "other.pt"), "resnet18")


def test_automatic_input_size_follows_the_initial_weights(trained, tmp_path):
    import torch
    import torchvision
    torch.save(torchvision.models.resnet18(weights=None).state_dict(),
               tmp_path / "resnet18.pth")
    earlier = pruning.save(*trained, str(tmp_path / "earlier"))
    assert pruning.automatic_input_size() == pruning.SCRATCH_INPUT_SIZE
    assert pruning.automatic_input_size(pruning.load_initial_weights(
        str(tmp_path / "resnet18.pth"), "resnet18")) == pruning.IMAGENET_INPUT_SIZE
    assert pruning.automatic_input_size(
        pruning.load_initial_weights(earlier, "resnet18")) == 32  # the earlier's own
    dataset = pruning.Dataset(["particle", "ice"], [shapes("particle", 12, 0),
                                                    shapes("ice", 12, 1)])
    _, metadata = pruning.train(dataset, pruning.TrainSettings(epochs=1, batch=16),
                                log=lambda line: None)
    assert metadata["input_size"] == metadata["settings"]["input_size"] == \
        pruning.SCRATCH_INPUT_SIZE
    with pytest.raises(InputError, match="0 for automatic"):
        pruning.TrainSettings(input_size=16).validate()


def test_bad_training_input_is_refused_with_the_item_named():
    particles = shapes("particle", pruning.MIN_CLASS_EXAMPLES, 0)
    with pytest.raises(InputError, match="only one class"):
        pruning.Dataset(["particle"], [particles])
    with pytest.raises(InputError, match="'ice' has no examples"):
        pruning.Dataset(["particle", "ice"], [particles, particles[:0]])
    with pytest.raises(InputError, match="different box sizes"):
        pruning.Dataset(["particle", "ice"], [particles, np.zeros((3, 40, 40), np.float32)])
    broken = shapes("ice", pruning.MIN_CLASS_EXAMPLES, 1)
    broken[4, 3, 3] = np.nan
    with pytest.raises(InputError, match=r"'ice': windows \[4\]"):
        pruning.train(pruning.Dataset(["particle", "ice"], [particles, broken]),
                      pruning.TrainSettings(**SETTINGS))


def test_constant_and_nan_windows_are_scored(trained):
    network, metadata = trained
    windows = shapes("particle", 4, 5)
    windows[1] = 3.0
    windows[2, 0, 0] = np.inf
    assert np.all(pruning.normalise(windows[1:2]) == 0)
    results = list(pruning.iter_predictions(network, metadata, windows, batch=3))
    scores = np.concatenate([s for _, s, _ in results])
    labels = sum((chunk_labels for _, _, chunk_labels in results), [])
    assert [start for start, _, _ in results] == [0, 3]
    assert np.all(np.isfinite(scores)) and scores[2] == 0 and labels[2] == "ice"
    assert labels[0] == labels[3] == "particle"


def test_cli_contract_train_and_prune(tmp_path):
    write_stack(str(tmp_path / "good.mrcs"), shapes("particle", 24, 0))
    write_stack(str(tmp_path / "ice.mrcs"), shapes("ice", 24, 1))
    write_stack(str(tmp_path / "carbon.mrcs"), shapes("carbon", 24, 2))
    test = np.concatenate([shapes("particle", 5, 7), shapes("ice", 5, 8)])
    write_stack(str(tmp_path / "test.mrcs"), test)
    out = tmp_path / "model"
    assert cli_main(["train-pruner", "--good", str(tmp_path / "good.mrcs"),
                     "--bad", str(tmp_path / "ice.mrcs"), "--bad", str(tmp_path / "carbon.mrcs"),
                     "--out", str(out), "--epochs", "4", "--input-size", "32",
                     "--batch", "16", "--device", "cpu"]) == 0
    assert os.path.exists(out / "model.pt") and os.path.exists(out / "model.json")
    scores = tmp_path / "scores.csv"
    assert cli_main(["prune", "--model", str(out / "model.pt"), "--particles",
                     str(tmp_path / "test.mrcs"), "--out", str(scores)]) == 0
    with open(scores) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(10))
    assert {r["label"] for r in rows} <= {"particle", "ice", "carbon"}
    called = [r["label"] == "particle" for r in rows]
    assert sum(called[:5]) >= 4 and sum(called[5:]) <= 1
    assert all(0 <= float(r["score"]) <= 1 for r in rows)

    # Eight test-time copies: the windows turned a quarter score as they are.
    write_stack(str(tmp_path / "turned.mrcs"), np.rot90(test, 1, axes=(1, 2)))
    eight = {}
    for name in ("test", "turned"):
        assert cli_main(["prune", "--model", str(out / "model.pt"), "--particles",
                         str(tmp_path / (name + ".mrcs")), "--tta", "8",
                         "--out", str(tmp_path / (name + "8.csv"))]) == 0
        with open(tmp_path / (name + "8.csv")) as f:
            eight[name] = [float(r["score"]) for r in csv.DictReader(f)]
    np.testing.assert_allclose(eight["turned"], eight["test"], atol=1e-4)

    # Another box size: refused with the file named, accepted with --resample.
    write_stack(str(tmp_path / "big.mrcs"), np.zeros((2, 48, 48), np.float32))
    assert cli_main(["prune", "--model", str(out / "model.pt"), "--particles",
                     str(tmp_path / "big.mrcs"), "--out", str(scores)]) == 2
    assert cli_main(["prune", "--model", str(out / "model.pt"), "--particles",
                     str(tmp_path / "big.mrcs"), "--out", str(scores), "--resample",
                     "--overwrite"]) == 0
    # One class only: a junk stack may not be named "particle".
    write_stack(str(tmp_path / "particle.mrcs"), shapes("particle", 4, 3))
    assert cli_main(["train-pruner", "--good", str(tmp_path / "good.mrcs"), "--bad",
                     str(tmp_path / "particle.mrcs"), "--out", str(out)]) == 2
