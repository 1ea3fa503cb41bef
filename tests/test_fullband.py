"""Full-band models: the rate travels through config, checkpoint, dataset, training,
streaming and the engine (model/fullband.py, train/highband.py)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from singsynth.cli import dataset as dataset_cli
from singsynth.cli import train as train_cli
from singsynth.engine import Synth
from singsynth.errors import ConfigError, DatasetError
from singsynth.model.checkpoint import load_model, save_model
from singsynth.model.config import SINGConfig, get_config
from singsynth.model.files import open_source
from singsynth.model.sing import SING
from singsynth.model.source import ModelSource
from singsynth.train import highband

SF2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
needs_fluidsynth = pytest.mark.skipif(not SF2.exists() or shutil.which("fluidsynth") is None,
                                      reason="needs fluidsynth and timgm6mb-soundfont (make setup)")


def band_share(wave, rate, low=9000, high=16000):
    """Share of a wave's energy between `low` and `high` Hz."""
    spec = np.abs(np.fft.rfft(np.asarray(wave, np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    return float(spec[(freqs >= low) & (freqs < high)].sum() / max(spec.sum(), 1e-30))


def tiny_fullband(instruments=("a", "b"), loud_noise=True) -> SING:
    torch.manual_seed(0)
    model = SING(get_config("tiny-fullband"), list(instruments)).eval()
    if loud_noise:   # a noise band that sounds, as a trained one does
        with torch.no_grad():
            model.noise.net[-1].bias.fill_(2.0)
    return model


def test_config_rates():
    cfg = get_config("fullband")
    assert (cfg.output_rate, cfg.output_samples) == (48000, 192000)
    assert (cfg.sample_rate, cfg.note_samples, cfg.steps) == (16000, 64000, 265)
    paper = get_config("paper")
    assert (paper.output_rate, paper.output_samples) == (16000, 64000)
    with pytest.raises(ConfigError, match="noise_low_hz"):
        SINGConfig.from_dict({**cfg.to_dict(), "noise_low_hz": 30000})
    with pytest.raises(ConfigError, match="upsample"):
        SINGConfig.from_dict({**cfg.to_dict(), "upsample": 9})


def test_generate_is_48k_and_stream_equals_it():
    model = tiny_fullband()
    inst, pitch, vel = torch.tensor([0, 1]), torch.tensor([60, 31]), torch.tensor([3.0, 0.5])
    whole = model.generate(inst, pitch, vel)
    assert whole.shape == (2, 192000)
    for chunk in (256, 1000, 16000):
        parts = list(model.stream(inst, pitch, vel, chunk))
        assert parts[0].shape == (2, chunk)
        torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-6, rtol=0)
    # The same note twice is the same noise; another pitch gets other noise.
    again = model.generate(inst, pitch, vel)
    assert torch.equal(again, whole)


def test_upsampled_core_keeps_the_16k_note():
    """Without noise, the full-band note is the 16 kHz note upsampled: downsampled again
    (every third sample), it matches the core's own note below its band edge."""
    model = tiny_fullband(loud_noise=False)
    model.noise = None
    inst, pitch, vel = torch.tensor([0]), torch.tensor([60]), torch.tensor([3])
    with torch.no_grad():
        core = model(inst, pitch, vel)
        full = model.full_band(inst, pitch, vel)
    taper = np.hanning(core.shape[1])   # the edges: the filter sees zeros beyond the note
    low = np.fft.rfft(core[0].numpy() * taper)
    back = np.fft.rfft(full[0, ::3].numpy() * taper)
    keep = np.arange(len(low)) < 0.45 * len(low)      # below 7.2 kHz, the harmonics' top
    err = np.abs(low[keep] - back[keep]).sum() / np.abs(low[keep]).sum()
    assert err < 1e-4, err
    assert band_share(full[0].numpy(), 48000, 8500, 24000) < 1e-6   # images removed


def test_checkpoint_of_each_rate_loads_and_plays(tmp_path, tiny_checkpoint):
    path = tmp_path / "fb.safetensors"
    save_model(path, tiny_fullband())
    model = load_model(path)
    assert model.config.output_rate == 48000 and model.noise is not None
    lazy = open_source(path)
    assert (lazy.sample_rate, lazy.note_samples) == (48000, 192000)
    old = open_source(tiny_checkpoint)
    assert (old.sample_rate, old.note_samples) == (16000, 64000)
    source = ModelSource(model)
    assert (source.sample_rate, source.note_samples) == (48000, 192000)


def _played(model, rate=48000, seconds=1.0):
    synth = Synth(ModelSource(model), rate, "default", generator="thread", offline=True)
    with synth:
        synth.note_on(0, 72, 100)
        synth.prepare([synth.note_key(0, 72, 100)], progress=False)
        return synth.process(int(seconds * rate))[:, 0]


def test_engine_plays_48k_notes_with_their_high_band(tiny_checkpoint):
    """A full-band model's note through the engine at 48 kHz keeps its band above 8 kHz;
    a 16 kHz model's note, resampled to 48 kHz, has none (the test fails for it)."""
    full = _played(tiny_fullband())
    old = _played(load_model(tiny_checkpoint))
    assert np.isfinite(full).all() and np.abs(full).max() > 1e-3
    assert band_share(full, 48000) > 0.01
    assert band_share(old, 48000) < 1e-4


def test_engine_does_not_resample_a_48k_model_at_48k(monkeypatch):
    import singsynth.generation.thread as generator
    called = []
    real = generator.resample_notes
    monkeypatch.setattr(generator, "resample_notes",
                        lambda notes, a, b, *rest: called.append((a, b)) or real(notes, a, b, *rest))
    _played(tiny_fullband(), 48000, 0.2)
    assert all(a == b for a, b in called)


@pytest.fixture(scope="module")
def dataset48(tmp_path_factory):
    out = tmp_path_factory.mktemp("fb") / "ds48"
    assert dataset_cli.main(["build", "--soundfont", str(SF2), "--out", str(out), "--programs",
                             "80", "--pitches", "60-71", "--velocities", "100,127",
                             "--sample-rate", "48000"]) == 0
    return out


@needs_fluidsynth
def test_dataset_build_at_48k(dataset48):
    examples = json.loads((dataset48 / "examples.json").read_text())
    assert len(examples) == 24
    assert {e["sample_rate"] for e in examples.values()} == {48000}
    wave, rate = sf.read(str(next((dataset48 / "audio").glob("*.wav"))))
    assert rate == 48000 and len(wave) == 192000
    # The square lead's partials above 9 kHz are in a 48 kHz dataset (TimGM6mb is a
    # small SoundFont: most of its samples stop lower).
    assert max(band_share(sf.read(str(p))[0], 48000)
               for p in (dataset48 / "audio").glob("*.wav")) > 5e-5


@needs_fluidsynth
def test_highband_stage_learns_the_high_band(tmp_path, dataset48):
    """A 16 kHz core (random, tiny) plus a noise band trained on the 48 kHz square lead:
    its note gets the recording's 9-16 kHz energy, within a factor of a few."""
    examples = json.loads((dataset48 / "examples.json").read_text())
    names = sorted({e["instrument_str"] for e in examples.values()})
    torch.manual_seed(0)
    core = SING(get_config("tiny-harmonic"), names)
    init = tmp_path / "core.safetensors"
    save_model(init, core)
    out = tmp_path / "run"
    assert train_cli.main(["--stage", "highband", "--init", str(init), "--data", str(dataset48),
                           "--out", str(out), "--set", "highband.epochs=40",
                           "--set", "highband.lr=0.03", "--set", "highband.every=1"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(41))   # epoch 0: the untrained head
    assert log[-1]["test_log_energy_l1"] < 0.9 * log[0]["test_log_energy_l1"]
    model = load_model(out / "model.safetensors")
    assert model.config.output_rate == 48000
    wave = model.generate(torch.tensor([0]), torch.tensor([65]), torch.tensor([4]))[0].numpy()
    key = next(k for k, e in examples.items() if (e["pitch"], e["velocity"]) == (65, 127))
    target = sf.read(str(dataset48 / "audio" / f"{key}.wav"))[0]
    energy = lambda w: band_share(w, 48000) * np.sum(np.square(w))  # noqa: E731
    assert 0.2 < energy(wave) / energy(target) < 5, energy(wave) / energy(target)
    # The same run again is refused; --resume at its end does nothing more.
    with pytest.raises(ConfigError, match="--resume"):
        train_cli.main(["--stage", "highband", "--init", str(init), "--data", str(dataset48),
                        "--out", str(out)])


@needs_fluidsynth
def test_highband_refuses_a_16k_dataset(tmp_path):
    from tests.train_fixtures import write_synthetic
    data = write_synthetic(tmp_path / "d16", ["x_000"], [60, 62])
    save_model(tmp_path / "c.safetensors", SING(get_config("tiny"), ["x_000"]))
    with pytest.raises(DatasetError, match="--sample-rate 48000"):
        highband.run(tmp_path / "c.safetensors", data, tmp_path / "out", epochs=1, every=1,
                     progress=False)


@needs_fluidsynth
def test_dataset_info_check_and_reader_at_48k(dataset48, capsys):
    from singsynth.data import NSynthDataset
    ds = NSynthDataset(dataset48, split="all")
    assert (ds.sample_rate, ds.note_samples) == (48000, 192000)
    assert ds[0][3].shape == (192000,)
    assert dataset_cli.main(["info", str(dataset48)]) == 0
    assert "at 48000 Hz" in capsys.readouterr().out
    assert dataset_cli.main(["check", str(dataset48)]) == 0


@needs_fluidsynth
def test_paper_stages_and_eval_refuse_a_48k_dataset(tmp_path, dataset48):
    """The three stages and eval work on the 16 kHz core: a 48 kHz dataset is one line."""
    from singsynth.eval import run as run_eval
    with pytest.raises(ConfigError, match="--stage highband"):
        train_cli.main(["--config", "tiny", "--data", str(dataset48), "--out", str(tmp_path / "o")])
    examples = json.loads((dataset48 / "examples.json").read_text())
    names = sorted({e["instrument_str"] for e in examples.values()})
    save_model(tmp_path / "c.safetensors", SING(get_config("tiny"), names))
    with pytest.raises(DatasetError, match="benchmarks/timbre.py"):
        run_eval(tmp_path / "c.safetensors", data=dataset48, out=tmp_path / "rep")
