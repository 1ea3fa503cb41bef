"""singsynth: a real-time synthesizer backend built on SING (Défossez et al., 2018)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    (HERE / "singsynth" / "__init__.py").read_text(encoding="utf-8"), re.M)[1]

# The shipped models, presets and training configs stay at the checkout's top, where
# README's commands name them (models/default.safetensors); a wheel carries them inside
# the package as singsynth/shipped/<folder>, where singsynth.files.shipped_dir finds them.
# Globs, so that a checkpoint added to models/ ships without touching this file; the
# model cards' figures (PNG, 3 MB) stay in the checkout.
SHIPPED = {"models": ["*.safetensors", "*.md"], "presets": ["*.yaml"], "configs": ["*.yaml"]}

setup(
    name="singsynth",
    version=VERSION,
    description="Real-time neural synthesizer backend built on SING",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["singsynth", "singsynth.*"])
    + [f"singsynth.shipped.{folder}" for folder in SHIPPED],
    package_dir={f"singsynth.shipped.{folder}": folder for folder in SHIPPED},
    package_data={f"singsynth.shipped.{folder}": globs for folder, globs in SHIPPED.items()},
    install_requires=[
        # A CPU machine should install torch first with `pip install torch==2.13.0`
        # (the Makefile does); a GPU user installs the CUDA build of the same version.
        "torch>=2.1",
        "numpy>=1.24",
        "sounddevice>=0.4.6",
        "mido>=1.3",
        "python-rtmidi>=1.5",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "soundfile>=0.12",
        "soxr>=0.3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "eval": ["librosa>=0.10", "matplotlib>=3.7"],
        # `dataset build --sfz`: sfizz's Python bindings.
        "sfz": ["pysfizz>=0.1.3"],
        "dev": ["pytest>=7.4", "librosa>=0.10", "matplotlib>=3.7", "JACK-Client>=0.5.4",
                "pysfizz>=0.1.3"],
    },
    entry_points={"console_scripts": ["singsynth=singsynth.cli:main"]},
)
