"""A facility session through the `cryoprune` commands: simulated 4096 x 4096
micrographs picked, extracted, pruned and classified, each stage timed.

For each session size (number of micrographs) the script reports per stage
the wall time, the throughput, the peak memory of the command's processes
(resident set, sampled every 0.2 s) and, where nvidia-smi is there, the peak
GPU memory and the mean GPU utilisation; and the machine. Stages:

- pick: `cryoprune pick` with the paper's preprocessing on every micrograph;
- extract: `cryoprune extract` of the simulated centres (the picker of a
  benchmark is trained for a few epochs only, so its picks vary in number;
  the simulated centres give every size the same particles per micrograph);
- prune: `cryoprune prune` of the extract folder's windows (the base pruner
  from `cryoprune base-pruner`);
- classify: `cryoprune classify2d` of the extracted stacks.

The picker and the base pruner are made once per work folder (setup, not
timed). Presets: `--preset gpu` is the session of the issue (1,000
micrographs of about 300 particles; sizes 250, 500, 1,000; 50 distinct
micrographs repeated, as simulating one takes seconds); `--preset cpu` a
small one (sizes 2, 4, 8 micrographs of 100 particles, short training).

    nice -n 10 python benchmarks/facility_session.py --preset cpu \\
        --out benchmarks/facility_session_cpu.json
"""
import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work", "facility_session")

SHAPE = (4096, 4096)
PIXEL_SIZE = 1.0    # A/px: the simulated barrel is 90 px across
BOX = 128
PRESETS = {
    "gpu": dict(sizes=[250, 500, 1000], particles=300, device="0", classes=100,
                classify_epochs=20, picker_epochs=30, pruner_micrographs=60,
                pruner_epochs=4, threads=16),
    "cpu": dict(sizes=[2, 4, 8], particles=100, device="cpu", classes=10,
                classify_epochs=2, picker_epochs=2, pruner_micrographs=10,
                pruner_epochs=1, threads=2),
}


def cryoprune(*argv):
    return [sys.executable, "-m", "cryoprune_scipion.cli", *map(str, argv)]


class Monitor:
    """Peak resident memory of a process and its children, and GPU memory
    and utilisation from nvidia-smi, sampled while it runs."""

    def __init__(self, process, period=0.2):
        import psutil
        self.root = psutil.Process(process.pid)
        self.period = period
        self.peak_rss = 0
        self.gpu_memory, self.gpu_utilisation = [], []
        self.smi = shutil.which("nvidia-smi")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.done = threading.Event()
        self.thread.start()

    def _run(self):
        import psutil
        while not self.done.is_set():
            try:
                tree = [self.root] + self.root.children(recursive=True)
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            if self.smi:
                query = subprocess.run([self.smi, "--query-gpu=memory.used,utilization.gpu",
                                        "--format=csv,noheader,nounits"],
                                       capture_output=True, text=True).stdout.split("\n")[0]
                if query.strip():
                    memory, utilisation = map(float, query.split(","))
                    self.gpu_memory.append(memory)
                    self.gpu_utilisation.append(utilisation)
            time.sleep(self.period)

    def stop(self):
        self.done.set()
        self.thread.join()
        figures = {"peak_rss_gib": self.peak_rss / 2 ** 30}
        if self.gpu_memory:
            figures.update(peak_gpu_memory_gib=max(self.gpu_memory) / 1024,
                           mean_gpu_utilisation=float(np.mean(self.gpu_utilisation)))
        return figures


def run_stage(command, log):
    began = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        monitor = Monitor(process)
        status = process.wait()
    figures = monitor.stop()
    if status != 0:
        raise SystemExit("%s failed (exit %d); see %s" % (" ".join(command[2:4]), status, log))
    figures["wall_s"] = time.perf_counter() - began
    return figures


def simulate(folder, count, particles, distinct):
    """count micrographs (kept across runs) and their centres; beyond the
    first `distinct`, micrographs are links to those (a 4096 x 4096
    simulation takes several CPU seconds)."""
    from cryoprune_scipion.engine.io import write_micrograph, write_table
    from cryoprune_scipion.engine.simulate import simulate_micrograph
    mics, truth = os.path.join(folder, "micrographs"), os.path.join(folder, "truth")
    os.makedirs(mics, exist_ok=True)
    os.makedirs(truth, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(mics, "mic%04d.mrc" % index)
        if index >= distinct and not os.path.exists(path):
            os.symlink("mic%04d.mrc" % (index % distinct), path)
            shutil.copy(os.path.join(truth, "mic%04d.csv" % (index % distinct)),
                        os.path.join(truth, "mic%04d.csv" % index))
        if not os.path.exists(path):
            simulated = simulate_micrograph(SHAPE, n_particles=particles,
                                            pixel_size=PIXEL_SIZE, snr=0.5,
                                            junk=("ice",), seed=index)
            write_table(os.path.join(truth, "mic%04d.csv" % index), ["x", "y", "class"],
                        [{"x": p["x"], "y": p["y"], "class": p["view"]}
                         for p in simulated.particles])
            write_micrograph(path, simulated.image, PIXEL_SIZE)
        paths.append(path)
    return paths, truth


def setup_models(work, micrographs, truth, preset, log_dir):
    """The picker (trained briefly on two micrographs) and the base pruner."""
    picker = os.path.join(work, "picker", "model.pt")
    if not os.path.exists(picker):
        run_stage(cryoprune("train-picker", "--micrographs", *micrographs[:2], "--coords",
                            truth, "--box", BOX, "--out", os.path.dirname(picker),
                            "--epochs", preset["picker_epochs"], "--val-fraction", 0,
                            "--threads", preset["threads"], "--device", preset["device"],
                            "--overwrite"),
                  os.path.join(log_dir, "train-picker.log"))
    pruner = os.path.join(work, "pruner", "model.pt")
    if not os.path.exists(pruner):
        run_stage(cryoprune("base-pruner", "--out", os.path.dirname(pruner),
                            "--micrographs", preset["pruner_micrographs"],
                            "--epochs", preset["pruner_epochs"], "--threads",
                            preset["threads"], "--device", preset["device"], "--overwrite"),
                  os.path.join(log_dir, "base-pruner.log"))
    return picker, pruner


def session(work, micrographs, truth, picker, pruner, preset):
    """Run the four stages on `micrographs`; returns {stage: figures}."""
    run = os.path.join(work, "session_%d" % len(micrographs))
    os.makedirs(run, exist_ok=True)
    device, threads = preset["device"], preset["threads"]
    stages = {}
    stages["pick"] = run_stage(cryoprune(
        "pick", "--model", picker, "--micrographs", *micrographs, "--out",
        os.path.join(run, "picks"), "--threads", threads, "--device", device, "--overwrite"),
        os.path.join(run, "pick.log"))
    stages["pick"]["items"] = len(micrographs)
    stages["pick"]["picks"] = sum(len(open(p).readlines()) - 1 for p in
                                  glob.glob(os.path.join(run, "picks", "*.csv")))
    particles = os.path.join(run, "particles")
    stages["extract"] = run_stage(cryoprune(
        "extract", "--micrographs", *micrographs, "--coords", truth, "--box", BOX,
        "--out", particles, "--downsample", 2, "--invert", "--threads", threads,
        "--device", device, "--overwrite"), os.path.join(run, "extract.log"))
    stacks = sorted(glob.glob(os.path.join(particles, "*.mrcs")))
    with open(os.path.join(particles, "particles.csv")) as f:
        count = len(f.readlines()) - 1
    stages["extract"]["items"] = count
    stages["prune"] = run_stage(cryoprune(
        "prune", "--model", pruner, "--particles", particles, "--out",
        os.path.join(run, "scores.csv"), "--resample", "--threads", threads,
        "--device", device, "--overwrite"), os.path.join(run, "prune.log"))
    stages["prune"]["items"] = count
    stages["classify"] = run_stage(cryoprune(
        "classify2d", "--particles", *stacks, "--classes", preset["classes"], "--out",
        os.path.join(run, "classes"), "--epochs", preset["classify_epochs"],
        "--working-size", 64, "--threads", threads, "--device", device, "--overwrite"),
        os.path.join(run, "classify.log"))
    stages["classify"]["items"] = count
    for figures in stages.values():
        figures["per_s"] = figures["items"] / figures["wall_s"]
    return stages


def machine():
    import torch
    description = {"platform": platform.platform(), "cpu_cores": os.cpu_count(),
                   "torch": torch.__version__}
    if torch.cuda.is_available():
        description["gpus"] = [torch.cuda.get_device_name(i)
                               for i in range(torch.cuda.device_count())]
    return description


def table(results):
    """The figures as a Markdown table, one row per session size and stage."""
    lines = ["| micrographs | stage | items | wall s | items/s | peak RAM GiB | "
             "peak GPU GiB | GPU busy % |", "| --- " * 8 + "|"]
    for size, stages in results["sessions"].items():
        for name, f in stages.items():
            gpu = ("%.1f | %.0f" % (f["peak_gpu_memory_gib"], f["mean_gpu_utilisation"])
                   if "peak_gpu_memory_gib" in f else "- | -")
            lines.append("| %s | %s | %d | %.1f | %.1f | %.2f | %s |" % (
                size, name, f["items"], f["wall_s"], f["per_s"], f["peak_rss_gib"], gpu))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="session sizes in micrographs (default: the preset's)")
    parser.add_argument("--distinct", type=int, default=50,
                        help="micrographs simulated; the others repeat them")
    parser.add_argument("--work", default=None, help="scratch folder (default: "
                        "benchmarks/work/facility_session/<preset>)")
    parser.add_argument("--out", required=True, help="JSON of the figures")
    parser.add_argument("--table", action="store_true",
                        help="print the figures of --out as a Markdown table and stop")
    args = parser.parse_args()
    if args.table:
        with open(args.out) as f:
            print(table(json.load(f)))
        return
    preset = dict(PRESETS[args.preset])
    sizes = args.sizes or preset["sizes"]
    work = args.work or os.path.join(WORK, args.preset)
    os.makedirs(work, exist_ok=True)
    began = time.perf_counter()
    micrographs, truth = simulate(work, max(sizes), preset["particles"], args.distinct)
    print("simulated %d micrographs in %.0f s" % (len(micrographs),
                                                  time.perf_counter() - began), flush=True)
    picker, pruner = setup_models(work, micrographs, truth, preset, work)
    results = {"machine": machine(), "preset": args.preset, "settings": preset,
               "micrograph_shape": SHAPE, "box": BOX, "sessions": {}}
    for size in sizes:
        stages = session(work, micrographs[:size], truth, picker, pruner, preset)
        results["sessions"][str(size)] = stages
        print("%d micrographs: %s" % (size, ", ".join(
            "%s %.1f s (%.1f/s)" % (name, f["wall_s"], f["per_s"])
            for name, f in stages.items())), flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
