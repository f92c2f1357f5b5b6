"""The contrastive start of a benchmark set, kept for refinement
experiments: the working stack and k-means labels that classify2d hands to
engine/refine.py (1,500 particles, 12 epochs, seed 0, as bench_simulated.py),
with the true views, in FOLDER/SET.npz. Used to choose the duplicate
threshold with refine_threshold.py.

    nice -n 10 python benchmarks/classification/refine_starts.py SET FOLDER
"""
import os, sys, tempfile, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from cryoprune_scipion.engine import classify2d, contrastive, refine
from cryoprune_scipion.engine.io import write_stack
from bench_simulated import SETS
torch.set_num_threads(1)
name, folder_out = sys.argv[1], sys.argv[2]
snr, mixture = SETS[name]
images, truth, defoci, clean = common.simulate_set(snr, 1500, 0, mixture, 10)
def grab(working, labels, k, settings, device=None, references=None, seed=0):
    np.savez(os.path.join(folder_out, name + ".npz"), working=np.asarray(working), labels=labels,
             truth=truth, clean=clean)
    raise SystemExit(0)
refine.refine = grab
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "p.mrcs")
    write_stack(path, images, common.PIXEL_SIZE)
    s = classify2d.ClassificationSettings(10, working_size=64, training=contrastive.TrainingSettings(epochs=12, seed=0), refinement=refine.RefinementSettings(passes=6))
    classify2d.classify([path], s, folder, ctf=common.ctf_of(defoci))
