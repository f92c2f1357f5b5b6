"""Refinement (engine/refine.py) from the clean views (an oracle start) and from
random labels, on the benchmark set: what the refinement reaches without the
contrastive start.

    nice -n 10 python benchmarks/classification/refine_start.py SNR N MODE PASSES
"""
import os, sys, time, logging, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from cryoprune_scipion.engine import refine, contrastive
from cryoprune_scipion.engine.metrics import clustering_accuracy
logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.set_num_threads(1)
snr = float(sys.argv[1]); n = int(sys.argv[2]); mode = sys.argv[3]
images, truth, defoci, clean = common.simulate_set(snr, n, 0, False, 10)
working = contrastive.make_working_stack([images], 64, "benchmarks/work/refine_start_working.npy", common.ctf_of(defoci))
st = refine.RefinementSettings(passes=1, mode="hard")
t = time.time()
r = refine.refine(working, np.ones(n, int), 10, st, references=clean)
print("oracle acc", clustering_accuracy(truth, r.labels), time.time() - t)
rng = np.random.default_rng(0)
st = refine.RefinementSettings(passes=int(sys.argv[4]), mode=mode)
t = time.time()
r = refine.refine(working, rng.integers(1, 11, n), 10, st)
print("random-start acc", clustering_accuracy(truth, r.labels), time.time() - t)
