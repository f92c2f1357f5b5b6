"""Test setup: a headless Scipion home in a temporary folder.

pyworkflow reads its configuration from the environment when it is first
imported, so the variables are set here, before any test module imports it.
"""
import os
import sys
import tempfile

_SCIPION_HOME = tempfile.mkdtemp(prefix="cryoprune-scipion-home-")
os.makedirs(os.path.join(_SCIPION_HOME, "config"))
with open(os.path.join(_SCIPION_HOME, "config", "hosts.conf"), "w") as _hosts:
    _hosts.write("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n"
                 "NAME = SCIPION_LOCALHOST\nADDRESS = localhost\nMPI_COMMAND = \n"
                 "QUEUE_SYSTEM = {}\n")

for _name, _value in {"SCIPION_DOMAIN": "pwem",
                      "SCIPION_HOME": _SCIPION_HOME,
                      "SCIPION_USER_DATA": os.path.join(_SCIPION_HOME, "data"),
                      "SCIPION_TESTS": os.path.join(_SCIPION_HOME, "tests"),
                      "SCIPION_TEST_NOSYNC": "1",
                      "SCIPION_NOTIFY": "False",
                      "SCIPION_PYTHON": sys.executable,  # runs the protocols
                      "YOLO_OFFLINE": "1",
                      "YOLO_CONFIG_DIR": os.path.join(_SCIPION_HOME, "ultralytics"),
                      "MPLBACKEND": "Agg"}.items():
    os.environ[_name] = _value
