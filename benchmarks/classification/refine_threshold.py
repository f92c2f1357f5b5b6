"""Refinement (6 passes, hard) from a start kept by refine_starts.py, with a
duplicate threshold (2.0: no merging): accuracy, and per final class its
size, views, mean correlation and aligned correlation with every average.

    nice -n 10 python benchmarks/classification/refine_threshold.py FOLDER SET THRESHOLD
"""
import os, sys, logging, time, numpy as np, torch
from cryoprune_scipion.engine import refine
from cryoprune_scipion.engine.metrics import clustering_accuracy
logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.set_num_threads(1)
folder, name, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
d = np.load(os.path.join(folder, name + ".npz"))
working, labels, truth = d["working"], d["labels"], d["truth"]
st = refine.RefinementSettings(passes=6, duplicate_correlation=threshold)
t = time.time()
r = refine.refine(working, labels, 10, st)
print(name, "threshold", threshold, "accuracy %.3f" % clustering_accuracy(truth, r.labels), "%.0f s" % (time.time() - t))
sim = refine.average_similarity(torch.as_tensor(r.averages), st)
np.set_printoptions(precision=2, suppress=True, linewidth=200)
for k in range(10):
    m = truth[r.labels == k + 1]
    print(k + 1, len(m), np.bincount(m, minlength=10), "fit %.3f" % r.correlations[r.labels == k + 1].mean(), sim[k])
