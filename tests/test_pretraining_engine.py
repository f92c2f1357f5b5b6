"""Self-supervised pretraining of the pruner backbone on unlabelled windows:
its loss falls on two clearly different window types, and pruner training
starts from the saved backbone."""
import numpy as np
import pytest
import torch

from cryoprune_scipion.engine import pretraining, pruning
from cryoprune_scipion.engine.io import InputError

BOX = 24


def unlabelled_windows(n, seed=0):
    """Noisy discs and stripes, mixed, without labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:BOX, :BOX] - BOX / 2
    disc = (np.hypot(yy, xx) < 6).astype(np.float32)
    windows = []
    for i in range(n):
        image = disc if i % 2 else (np.sin(xx / 1.5 + rng.uniform(0, 6)) > 0)
        windows.append(2 * image + rng.normal(size=(BOX, BOX)))
    return np.stack(windows).astype(np.float32)


@pytest.fixture(scope="module")
def pretrained():
    torch.set_num_threads(1)
    settings = pretraining.PretrainSettings(input_size=32, epochs=4, batch=16)
    return pretraining.pretrain(unlabelled_windows(64), settings, log=lambda s: None)


def test_loss_falls_on_two_window_types(pretrained):
    _, metadata = pretrained
    losses = metadata["pretraining"]["losses"]
    assert len(losses) == 4 and metadata["pretraining"]["windows"] == 64
    # NT-Xent of random projections is about log(2 * batch - 1) = 3.4
    assert losses[0] > 2.5
    assert losses[-1] < losses[0] - 0.3


def test_saved_backbone_starts_pruner_training(pretrained, tmp_path):
    network, metadata = pretrained
    path = pretraining.save(network, metadata, str(tmp_path))
    settings = pruning.TrainSettings(input_size=32)
    started = pruning.initial_network(settings, 2, path)
    for name, tensor in network.features.state_dict().items():
        assert torch.equal(started.features.state_dict()[name], tensor), name
    with pytest.raises(InputError, match="train a pruner from it"):
        pruning.load(path)
