"""Packaging glue: the top-level ``weights/`` folder (shipped models, sample images, licences) is
installed as the data package ``npcnn.shipped`` so ``npcnn demo`` finds it after ``pip install .``."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["npcnn", "npcnn.*"]) + ["npcnn.shipped"],
    package_dir={"npcnn.shipped": "weights"},
    package_data={"npcnn.shipped": ["*.hdf5", "*.h5", "*.keras", "*.json", "*.md", "samples/*", "licenses/*"]},
    include_package_data=False,
)
