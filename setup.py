"""Packaging of the cryoprune-scipion plugin."""
import re

from setuptools import find_packages, setup

with open("cryoprune_scipion/__init__.py", encoding="utf-8") as f:
    __version__ = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="scipion-em-cryoprune",
    version=__version__,
    description="Scipion plugin: YOLO particle picking, PickerOptimizer pruning "
                "and contrastive 2D classification for single-particle cryo-EM",
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks", "benchmarks.*"]),
    include_package_data=True,
    package_data={"cryoprune_scipion": ["protocols.conf", "templates/*.json.template",
                                      "cryoprune_logo.png"]},
    install_requires=[
        "scipion-pyworkflow>=3.5",
        "scipion-em>=3.5",
        "torch",
        "torchvision",
        "ultralytics>=8.1",
        "mrcfile",
        "numpy",
        "scipy",
        "pywavelets",
        "scikit-image",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "pytest-timeout"]},
    entry_points={
        "pyworkflow.plugin": ["cryoprune_scipion = cryoprune_scipion"],
        "console_scripts": ["cryoprune = cryoprune_scipion.cli:main"],
    },
    classifiers=["Programming Language :: Python :: 3",
                 "Topic :: Scientific/Engineering :: Bio-Informatics"],
)
