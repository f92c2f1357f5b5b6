"""The micrographs of `pick` and `extract` split over workers, one per GPU
of --device: tested on the CPU with the hidden --cpu-workers, the results
must be those of one worker."""
import numpy as np
import pytest

from cryoprune_scipion.cli import main
from cryoprune_scipion.engine.io import write_micrograph, write_table
from cryoprune_scipion.engine.workers import device_groups, shares


@pytest.mark.parametrize("count, parts", [(7, 3), (2, 4), (5, 1), (1, 2)])
def test_shares_keep_the_order_and_cover_every_item(count, parts):
    items = list(range(count))
    cut = shares(items, parts)
    assert [i for share in cut for i in share] == items
    assert len(cut) == min(count, parts) and all(cut)
    assert max(map(len, cut)) - min(map(len, cut)) <= 1


def test_one_worker_per_gpu_or_the_cpu_workers_asked_for():
    assert device_groups([0, 2]) == [[0], [2]]
    assert device_groups([], cpu_workers=3) == [[], [], []]


def test_pick_split_over_workers_gives_one_workers_picks(tmp_path):
    rng = np.random.default_rng(0)
    micrographs = []
    (tmp_path / "coords").mkdir()
    for index in range(3):
        image = rng.normal(size=(96, 96)).astype(np.float32)
        rows = [{"x": x, "y": y} for x, y in rng.uniform(16, 80, size=(6, 2))]
        for row in rows:
            image[int(row["y"]) - 4:int(row["y"]) + 4, int(row["x"]) - 4:int(row["x"]) + 4] += 3
        micrographs.append(str(tmp_path / ("mic%d.mrc" % index)))
        write_micrograph(micrographs[-1], image, 1.0)
        write_table(str(tmp_path / "coords" / ("mic%d.csv" % index)), ["x", "y"], rows)
    assert main(["train-picker", "--micrographs", *micrographs[:2], "--coords",
                 str(tmp_path / "coords"), "--box", "16", "--out", str(tmp_path / "picker"),
                 "--epochs", "1", "--working-size", "96", "--no-preprocess"]) == 0
    pick = ["pick", "--model", str(tmp_path / "picker" / "model.pt"), "--micrographs",
            *micrographs, "--threshold", "0.001", "--border", "0"]
    assert main(pick + ["--out", str(tmp_path / "one")]) == 0
    assert main(pick + ["--out", str(tmp_path / "split"), "--cpu-workers", "2"]) == 0
    picks = 0
    for index in range(3):
        name = "mic%d.csv" % index
        one = (tmp_path / "one" / name).read_text()
        assert (tmp_path / "split" / name).read_text() == one
        picks += len(one.splitlines()) - 1
    assert picks > 0
