"""The protocols' heavy steps through a real cluster queue: a one-node SLURM
on this machine (../shared/tools/local-slurm.sh, Debian's slurm-wlm and
munge, as root) and a hosts.conf that sends to `sbatch` each job of a step
(QUEUE_FOR_JOBS = Y) or the whole protocol (N), as a facility's Scipion does. The extraction run
through the queue must give the particles of a local run, and its job
script must ask for no GPU when Use GPU is off; the 2D classification of
its particles through the queue gives the classes of a local run.

Skipped where SLURM cannot run: the script is not there, not root, the
cluster does not come up within 90 s, or it does not run a probe job of
QUEUE_CPUS cores within 60 s (a node that accepts jobs but never starts them,
or has fewer cores: SLURM keeps such a job pending without end). Every queued
run has a deadline: Scipion itself waits for a queued job without end."""
import glob
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from pwem.protocols import ProtImportMicrographs

from cryoprune_scipion.engine.io import read_stack, write_micrograph
from cryoprune_scipion.engine.simulate import simulate_micrograph
from cryoprune_scipion.protocols import (CryoPruneProtContrastive2D,
                                         CryoPruneProtExtractParticles)
from coordinate_import import import_coordinates

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_SLURM = os.path.join(REPOSITORY, "..", "shared", "tools", "local-slurm.sh")
START_TIMEOUT = 90  # seconds
PROBE_TIMEOUT = 60  # seconds for a job of one `true` to complete
QUEUE = "debug"
PROTOCOL_TIMEOUT = 300  # seconds for a queued protocol, its waits in the queue included
QUEUE_CPUS = 2  # --cpus-per-task of the classification job: its 2 threads

# The facility's hosts.conf: SLURM, each job of a step submitted on its own.
# Scipion's templates have no conditionals, so the submit command drops the
# GPU request of a job that asks for none before calling sbatch.
HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %%_(JOB_NODES)d %%_(COMMAND)s
NAME = SLURM
MANDATORY = 0
SUBMIT_PREFIX = cryoprune
SUBMIT_COMMAND = sed -i '/--gres=gpu:0$/d' %%_(JOB_SCRIPT)s && sbatch %%_(JOB_SCRIPT)s
CANCEL_COMMAND = scancel %%_(JOB_ID)s
CHECK_COMMAND = squeue -h -j %%_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH --job-name=%%_(JOB_NAME)s
    #SBATCH --partition=%%_(JOB_QUEUE)s
    #SBATCH --output=%%_(JOB_LOGS)s.out
    #SBATCH --error=%%_(JOB_LOGS)s.err
    #SBATCH --ntasks=%%_(JOB_NODES)d
    #SBATCH --cpus-per-task=%%_(JOB_THREADS)d
    #SBATCH --gres=gpu:%%_(GPU_COUNT)d
    %%_(JOB_COMMAND)s
QUEUES = {"%(queue)s": [["QUEUE_FOR_JOBS", "Y", "Use queue for jobs", "Submit each job on its own"]]}
QUEUES_DEFAULT = {"QUEUE_FOR_JOBS": "Y"}
""" % {"queue": QUEUE}


def start_slurm():
    """None when a one-node SLURM is up, else why not."""
    if not os.path.isfile(LOCAL_SLURM):
        return "%s not found" % os.path.normpath(LOCAL_SLURM)
    if os.geteuid() != 0:
        return "starting SLURM needs root"
    # The script declares the node's cores with `nproc`, which obeys OMP_NUM_THREADS:
    # importing ultralytics sets it to 1 in this process.
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    # Output to a file, not a pipe: daemons and a hanging apt-get started by the
    # script would hold a pipe open past the timeout.
    with tempfile.TemporaryFile("w+") as output:
        starting = subprocess.Popen(["bash", LOCAL_SLURM], stdout=output, env=environment,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            starting.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(starting.pid, signal.SIGKILL)
            return "SLURM did not start within %d s" % START_TIMEOUT
        output.seek(0)
        printed = output.read()
    if starting.returncode != 0 or "idle" not in printed:
        return "SLURM did not start: %s" % printed.strip()[-300:]
    return run_probe_job()


def run_probe_job():
    """None when the cluster runs a trivial job of QUEUE_CPUS cores to completion,
    else why not."""
    submitted = subprocess.run(["sbatch", "--parsable", "--partition", QUEUE,
                                "--cpus-per-task", str(QUEUE_CPUS), "--output", "/dev/null",
                                "--wrap", "true"], capture_output=True, text=True)
    if submitted.returncode != 0:
        return "sbatch refused a probe job: %s" % submitted.stderr.strip()[-300:]
    jobId = submitted.stdout.strip().split(";")[0]
    for _ in range(PROBE_TIMEOUT):
        state = job_state(jobId)
        if state.startswith("COMPLETED"):
            return None
        if state.split()[0] in ("FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT"):
            break
        time.sleep(1)
    subprocess.run(["scancel", jobId], capture_output=True)
    return "SLURM does not run jobs: a probe job of %d cores is %s" % (QUEUE_CPUS, state)


def job_state(jobId):
    """SLURM's state of a job and, for a waiting one, the reason."""
    shown = subprocess.run(["scontrol", "show", "job", jobId], capture_output=True,
                           text=True).stdout
    state = re.search(r"JobState=(\S+)", shown)
    reason = re.search(r"Reason=(\S+)", shown)
    return "%s (%s)" % (state.group(1) if state else "unknown",
                        reason.group(1) if reason else "no reason given")


class TestQueue(BaseTest):
    @classmethod
    def setUpClass(cls):
        reason = start_slurm()
        if reason:
            pytest.skip(reason)
        setupTestProject(cls)
        hosts = cls.getOutputPath("hosts.conf")
        with open(hosts, "w") as f:
            f.write(HOSTS_CONF)
        cls.proj._loadHosts(hosts)
        folder = cls.getOutputPath("simulated")
        os.makedirs(folder, exist_ok=True)
        simulated = simulate_micrograph((256, 320), n_particles=6, pixel_size=4.0, snr=3.0,
                                        seed=7)
        write_micrograph(os.path.join(folder, "sim.mrc"), simulated.image, 4.0)
        importMics = cls.newProtocol(ProtImportMicrographs, filesPath=folder,
                                     filesPattern="sim.mrc", samplingRate=4.0, voltage=300,
                                     sphericalAberration=2.7, amplitudeContrast=0.1)
        cls.launchProtocol(importMics)
        centres = [(p["x"], p["y"]) for p in simulated.particles] + [(5, 100)]
        cls.coordImport = import_coordinates(cls, importMics.outputMicrographs,
                                             lambda mic: centres, 48, "coordinates")

    def _extraction(self, queued, **kwargs):
        prot = self.newProtocol(CryoPruneProtExtractParticles, boxSize=48, downFactor=1.5,
                                **kwargs)
        prot.inputCoordinates.set(self.coordImport)
        prot.inputCoordinates.setExtended("outputCoordinates")
        return self._queue(prot, queued)

    @staticmethod
    def _queue(prot, queued):
        """Send each job of the protocol's steps to the SLURM queue."""
        if queued:
            prot._useQueue.set(True)
            prot._queueParams.set(json.dumps([QUEUE, {"QUEUE_FOR_JOBS": "Y"}]))
        return prot

    def _launchQueued(self, prot):
        """Run a queued protocol to its end, or stop it and fail after PROTOCOL_TIMEOUT."""
        self.proj.launchProtocol(prot, wait=False)
        for _ in range(PROTOCOL_TIMEOUT):
            self.proj._updateProtocol(prot)
            if not prot.isActive():
                break
            time.sleep(1)
        else:
            queue = subprocess.run(["squeue", "-h", "-o", "%i %j %T %r"], capture_output=True,
                                   text=True).stdout
            self.proj.stopProtocol(prot)
            subprocess.run(["scancel", "--partition", QUEUE], capture_output=True)
            self.fail("%s did not end within %d s; the queue held: %s"
                      % (prot.getRunName(), PROTOCOL_TIMEOUT, queue.strip() or "nothing"))
        self.assertTrue(prot.isFinished(), "the queued protocol ended %s" % prot.getStatus())
        return prot

    def test_extraction_and_classification_through_sbatch_equal_local_runs(self):
        local = self.launchProtocol(self._extraction(queued=False, useGpu=False))
        queued = self._launchQueued(self._extraction(queued=True, useGpu=False))

        scripts = glob.glob(queued._getLogsPath("cryoprune*.job"))
        self.assertEqual(len(scripts), 1)  # the one job of the one extraction step
        with open(scripts[0]) as f:
            script = f.read()
        self.assertIn("cryoprune_scipion.cli extract", script)
        self.assertIn("--device cpu", script)
        self.assertNotIn("--gres", script)  # Use GPU off: no GPU asked for
        with open(queued._getLogsPath("run.stdout")) as f:
            log = re.sub(r"\x1b\[[0-9;]*m", "", f.read())  # without the colours
        self.assertIn("Submitting to queue: 'sed -i '/--gres=gpu:0$/d' %s && sbatch"
                      % os.path.abspath(scripts[0]), log)
        jobId = re.search(r"Launched job with id (\d+)", log).group(1)
        job = subprocess.run(["scontrol", "show", "job", jobId], capture_output=True,
                             text=True).stdout
        self.assertIn("JobState=COMPLETED", job)
        slurmOutput, = glob.glob(queued._getLogsPath("*-1-1.out"))  # written by SLURM
        with open(slurmOutput) as f:
            self.assertIn("particles of 32 px from 1 micrographs", f.read())

        self.assertEqual(queued.outputParticles.getSize(), local.outputParticles.getSize())
        for a, b in zip(local.outputParticles.iterItems(orderBy="id"),
                        queued.outputParticles.iterItems(orderBy="id")):
            self.assertEqual((a.getCoordinate().getX(), a.getCoordinate().getY()),
                             (b.getCoordinate().getX(), b.getCoordinate().getY()))
            np.testing.assert_array_equal(read_stack(a.getFileName())[a.getIndex() - 1],
                                          read_stack(b.getFileName())[b.getIndex() - 1])

        # 2D classification of the particles: the same classes through the queue
        classes = []
        for queued in (False, True):
            prot = self.newProtocol(CryoPruneProtContrastive2D, numberOfClasses=2, epochs=1,
                                    batchSize=8, workingSize=32, alignIterations=1,
                                    refinePasses=1, phaseFlip=False, useGpu=False,
                                    numberOfThreads=QUEUE_CPUS)
            prot.inputParticles.set(local)
            prot.inputParticles.setExtended("outputParticles")
            if queued:
                self._launchQueued(self._queue(prot, True))
            else:
                self.launchProtocol(prot)
            classes.append({p.getObjId(): p.getClassId() for c in prot.outputClasses
                            for p in c})
        self.assertEqual(classes[0], classes[1])
        script, = glob.glob(prot._getLogsPath("cryoprune*.job"))
        with open(script) as f:
            self.assertIn("--cpus-per-task=%d" % QUEUE_CPUS, f.read())

    def test_whole_protocol_through_sbatch(self):
        """QUEUE_FOR_JOBS = N: the protocol itself runs as one SLURM job."""
        local = self.launchProtocol(self._extraction(queued=False, useGpu=False))
        prot = self._extraction(queued=True, useGpu=False)
        prot._queueParams.set(json.dumps([QUEUE, {"QUEUE_FOR_JOBS": "N"}]))
        self._launchQueued(prot)
        script, = glob.glob(prot._getLogsPath("cryoprune*.job"))
        with open(script) as f:
            self.assertIn("pw_protocol_run.py", f.read())
        self.assertEqual(prot.outputParticles.getSize(), local.outputParticles.getSize())
        for a, b in zip(local.outputParticles.iterItems(orderBy="id"),
                        prot.outputParticles.iterItems(orderBy="id")):
            np.testing.assert_array_equal(read_stack(a.getFileName())[a.getIndex() - 1],
                                          read_stack(b.getFileName())[b.getIndex() - 1])

    def test_a_gpu_is_asked_for_only_with_use_gpu(self):
        for useGpu, count in [(False, 0), (True, 2)]:
            prot = self._extraction(True, useGpu=useGpu, gpuList="0 1")
            prot.setHostConfig(self.proj.getHostConfig("localhost"))
            self.assertEqual(prot.getSubmitDict()["GPU_COUNT"], count)
