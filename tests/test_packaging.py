"""`pip install .` as a new user would: the wheel carries the default model, the presets
and the training configs, and the installed `singsynth` finds them from any folder.

The wheel is built from a copy of the checkout (building in place leaves build/ and
*.egg-info in it) without build isolation or an index, and installed with --no-deps into
a fresh virtualenv that sees the project's own virtualenv through a .pth file: no network,
and torch is not installed again. About 10-20 s on the 2-core VM (most of it importing
torch and generating 3 notes); each step has a timeout well above that.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import mido
import pytest

from singsynth import __version__

ROOT = Path(__file__).resolve().parents[1]
# What the build reads; the test copies these and nothing else.
SOURCES = ["setup.py", "MANIFEST.in", "README.md", "singsynth", "models", "presets", "configs"]


def copy_checkout(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.png")
    dest.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def run(cmd, timeout, **kw):
    # Without PYTHONPATH: a checkout on it would stand in for the installed package.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def short_song(path: Path) -> None:
    """Three GM notes, piano then flute (program 73): a second of music."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.Message("program_change", program=0, time=0))
    for note, program in ((60, None), (64, 73), (67, None)):
        if program is not None:
            track.append(mido.Message("program_change", program=program, time=0))
        track.append(mido.Message("note_on", note=note, velocity=100, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=240))
    mid.tracks.append(track)
    mid.save(path)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of the checkout, with one more checkpoint in models/."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    copy_checkout(src)
    # A checkpoint added to models/ later must ship with no change to setup.py (a glob).
    (src / "models" / "added-later.safetensors").write_bytes(b"not read by the build")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", tmp / "dist", src], timeout=180)
    (found,) = (tmp / "dist").glob("singsynth-*.whl")
    return found


def test_wheel_carries_models_presets_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.split("singsynth/shipped/", 1)[1] for n in names if "singsynth/shipped/" in n}
    expected = {f"models/{p.name}" for p in (ROOT / "models").glob("*.safetensors")}
    expected |= {f"models/{p.name}" for p in (ROOT / "models").glob("*.md")}
    expected |= {f"presets/{p.name}" for p in (ROOT / "presets").glob("*.yaml")}
    expected |= {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    expected.add("models/added-later.safetensors")
    assert {"models/default.safetensors", "models/default.md", "presets/gm.yaml",
            "presets/default.yaml", "configs/harmonic.yaml"} <= expected
    assert shipped == expected
    assert f"singsynth-{__version__}.dist-info/entry_points.txt" in names


def test_installed_wheel_renders_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=60)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    timeout=30).stdout.strip())
    # The project's dependencies (torch, numpy...) without installing them again; the
    # checkout's own editable singsynth is not seen (a .pth line adds a path, not its .pth files).
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: pip must not even try to uninstall the project's own editable
    # singsynth, which it sees through that .pth (it would refuse: outside the environment).
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--ignore-installed", "-q", wheel], timeout=120)
    singsynth = venv / "bin" / "singsynth"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    assert run([singsynth, "--version"], timeout=60, cwd=elsewhere).stdout == \
        f"singsynth {__version__}\n"
    installed = run([python, "-c", "import singsynth; print(singsynth.__file__)"],
                    timeout=60, cwd=elsewhere).stdout.strip()
    assert Path(installed).parent == site / "singsynth"
    info = json.loads(run([singsynth, "info", "--json"], timeout=120, cwd=elsewhere).stdout)
    assert Path(info["path"]) == site / "singsynth" / "shipped" / "models" / "default.safetensors"

    # Bare names of shipped files resolve inside the installed package, not the checkout.
    found = run([python, "-c", "from singsynth.files import shipped_dir; "
                 "from singsynth.train.config import load_config; "
                 "print(shipped_dir('presets')); print(load_config('tiny').model)"],
                timeout=120, cwd=elsewhere).stdout.split()
    assert found == [str(site / "singsynth" / "shipped" / "presets"), "tiny"]

    short_song(elsewhere / "song.mid")
    done = run([singsynth, "render", "song.mid", "-o", "song.wav", "--cache-dir",
                tmp_path / "cache", "-q"], timeout=180, cwd=elsewhere)
    assert "song.wav" in done.stdout
    import soundfile
    audio, rate = soundfile.read(elsewhere / "song.wav")
    assert rate == 48000 and audio.shape[1] == 2
    assert 0.75 * rate < len(audio) < 7 * rate and abs(audio).max() > 0.01


def test_bare_config_names_are_the_shipped_configs(tmp_path, monkeypatch):
    from singsynth.train.config import load_config
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("not: a config")  # a stray file does not replace it
    assert load_config("tiny") == load_config(ROOT / "configs" / "tiny.yaml")
    assert load_config("harmonic").model == "harmonic"
