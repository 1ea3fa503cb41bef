"""singsynth: a real-time synthesizer backend built on SING (Défossez et al., 2018)."""
from setuptools import find_packages, setup

setup(
    name="singsynth",
    version="0.1.0",
    description="Real-time neural synthesizer backend built on SING",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["singsynth", "singsynth.*"]),
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
        "dev": ["pytest>=7.4", "librosa>=0.10", "matplotlib>=3.7", "JACK-Client>=0.5.4"],
    },
    entry_points={"console_scripts": ["singsynth=singsynth.cli:main"]},
)
