"""Evaluation: pitch tracker, sampler baseline, loss plots and the report, on a tiny
NSynth-layout dataset of synthetic harmonic notes and a real (random-init) tiny checkpoint."""
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from singsynth.cli import main as cli_main
from singsynth.data.pitch import cents, track_pitch
from singsynth.data.split import make_split, write_split
from singsynth.errors import CheckpointError, ConfigError, DatasetError, SingsynthError
from singsynth.eval import run
from singsynth.eval.baseline import nearest_sources, shift_pitch
from singsynth.eval.metrics import pitch_accuracy
from singsynth.eval.plots import plot_log
from singsynth.model.dsp import spectral_loss
from singsynth.notes import midi_to_hz

RATE = 16000
# (instrument_str, id, family, family_str, harmonic amplitudes)
INSTRUMENTS = [("soft_piano_000", 0, 0, "piano", [1.0, 0.5, 0.25, 0.12]),
               ("reedy_violin_040", 40, 5, "strings", [1.0, 0.0, 0.6, 0.0, 0.4, 0.0, 0.3])]
PITCHES = list(range(48, 60))
VELOCITIES = [50, 100]
PNG = b"\x89PNG\r\n\x1a\n"


def harmonic_note(freq, harmonics=(1.0, 0.5, 0.25), level=0.5, n=64000):
    """A held harmonic tone: 10 ms attack, key released at 3 s, (n,) float32."""
    t = np.arange(n) / RATE
    wave = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t)
               for k, a in enumerate(harmonics) if a and freq * (k + 1) < RATE / 2)
    env = np.minimum(1, t / 0.01) * np.where(t < 3, 1.0, np.exp(-(t - 3) * 8))
    return (level * env * wave / sum(harmonics)).astype(np.float32)


def make_dataset(root, instruments=INSTRUMENTS, pitches=PITCHES, fraction=0.25):
    (root / "audio").mkdir(parents=True)
    examples = {}
    for name, inst, fam, fam_str, harmonics in instruments:
        for p in pitches:
            for v in VELOCITIES:
                key = f"{name}-{p:03d}-{v:03d}"
                examples[key] = {"note_str": key, "instrument": inst, "instrument_str": name,
                                 "pitch": p, "velocity": v, "sample_rate": RATE,
                                 "instrument_family": fam, "instrument_family_str": fam_str,
                                 "instrument_source": 0, "qualities": [0] * 10}
                sf.write(root / "audio" / f"{key}.wav",
                         harmonic_note(midi_to_hz(p), harmonics, v / 200), RATE, subtype="FLOAT")
    (root / "examples.json").write_text(json.dumps(examples))
    write_split(root, make_split({i[0]: pitches for i in instruments}, fraction, seed=0))
    return root


def make_checkpoint(path, instruments):
    from singsynth.model.checkpoint import save_model
    from singsynth.model.sing import build

    torch.manual_seed(0)
    save_model(path, build("tiny", instruments), {"stage": "e2e", "dataset": "test"})
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("eval") / "tiny-ds")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-eval.safetensors",
                           [i[0] for i in INSTRUMENTS])


@pytest.fixture(scope="module")
def report(dataset, checkpoint, tmp_path_factory):
    """The report folder of a full eval through the CLI (all notes: the cap exceeds them)."""
    out = tmp_path_factory.mktemp("report") / "rep"
    log = out.parent / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"stage": "ae", "epoch": 1, "train_loss": 0.3, "test_spectral": 0.28, "test_mse": 0.01},
        {"stage": "ae", "epoch": 2, "train_loss": 0.2, "test_spectral": 0.21, "test_mse": 0.01},
        {"stage": "lstm", "epoch": 1, "train_loss": 0.9, "test_spectral": 0.4, "test_mse": 0.02}]))
    with pytest.raises(SystemExit) as exit_:
        cli_main(["eval", str(checkpoint), "--data", str(dataset), "--out", str(out),
                  "--notes", "1000", "--log", str(log), "--examples", "2"])
    assert exit_.value.code == 0
    return out


def table_cell(text, row_label, column):
    """A number from report.md's Table 1 (column 1 = train spectral, 2 = held-out spectral)."""
    line = next(l for l in text.splitlines() if l.startswith(f"| {row_label}"))
    return float(line.strip("|").split("|")[column])


def test_pitch_tracker_on_harmonic_tones():
    tone = harmonic_note(440.0)
    assert abs(cents(track_pitch(tone, 69), 69)) <= 10
    sharp = harmonic_note(440.0 * 2 ** (100 / 1200))          # 100 cents sharp
    err = cents(track_pitch(sharp, 69), 69)
    assert 90 <= err <= 110
    low = harmonic_note(220.0)                                 # an octave below
    acc = pitch_accuracy(np.stack([tone, sharp, np.zeros_like(tone), low]), [69, 69, 69, 69])
    assert (acc["in_tune"], acc["unpitched"], acc["total"]) == (1, 1, 4)
    assert acc["octave_in_tune"] == 2
    assert acc["cents"][3] == pytest.approx(-1200, abs=10)
    assert acc["share"] == pytest.approx(1 / 4)
    assert math.isnan(acc["f0"][2])


@pytest.mark.parametrize("pitch", [92, 94, 102, 106, 108])
def test_pitch_tracker_on_high_notes(pitch):
    # At 16 kHz these periods are 3.8-9.6 samples; tracked there without upsampling, a
    # pure 2,960 Hz sine read an octave down and 3,729 Hz read 50 cents sharp.
    from singsynth.notes import midi_to_hz
    for harmonics in ((1.0,), (1.0, 0.5, 0.25, 0.12)):
        tone = harmonic_note(midi_to_hz(pitch), harmonics)
        assert abs(cents(track_pitch(tone, pitch), pitch)) <= 15, harmonics


def test_shift_pitch_resamples_like_a_sampler():
    low = harmonic_note(220.0)
    up = shift_pitch(low, 12)
    assert up.shape == (64000,) and up.dtype == np.float32
    assert abs(cents(track_pitch(up, 69), 69)) <= 10
    # Twice as fast: the 3-second release now starts near 1.5 s, then zero padding.
    assert np.abs(up[40000:]).max() < 1e-3 < np.abs(up[16000:20000]).max()
    down = shift_pitch(harmonic_note(440.0), -7)
    assert abs(cents(track_pitch(down, 62), 62)) <= 10


def test_nearest_sources_same_instrument_and_velocity_first():
    train_i, train_p, train_v = [0, 0, 0, 1, 0], [60, 64, 58, 61, 61], [1, 1, 1, 1, 0]
    src = nearest_sources(train_i, train_p, train_v, [0, 0, 1, 2], [62, 61, 61, 60], [1, 1, 0, 0])
    # 62: 60 and 64 tie, the lower wins; 61 at velocity 1 skips row 4 (velocity 0).
    assert src["rows"].tolist() == [0, 0, 3, -1]
    assert src["semitones"].tolist() == [2, 1, 0, 0]
    assert src["other_velocity"].tolist() == [False, False, True, False]


def test_report_matches_independent_losses(report, dataset, checkpoint):
    from singsynth.data.nsynth import NSynthDataset
    from singsynth.model.checkpoint import load_model

    text = (report / "report.md").read_text()
    test = NSynthDataset(dataset, split="test")
    assert len(test) == 2 * 3 * 2                      # 3 held-out pitches x 2 velocities each
    _, pitch, vel, audio = test.arrays()
    inst = test.instrument
    model = load_model(checkpoint)
    sing = spectral_loss(model.generate(inst, pitch, vel), audio).item()
    silence = spectral_loss(torch.zeros_like(audio), audio).item()
    assert table_cell(text, "SING", 2) == pytest.approx(sing, abs=6e-5)
    assert table_cell(text, "Silence", 2) == pytest.approx(silence, abs=6e-5)
    ae = model.decoder(model.encoder.encode_note(audio)).clamp(-1, 1)
    assert table_cell(text, "Autoencoder", 2) == pytest.approx(
        spectral_loss(ae, audio).item(), abs=6e-5)
    assert f"held-out {len(test)} of {len(test)}" in text
    # The recordings are pure harmonic tones: the tracker must find every one in tune.
    n = len(test)
    assert f"| Ground truth (tracker sanity check) | {n} / {n} | 100.0% | {n} / {n} | 0 |" in text
    tracked = json.loads((report / "results.json").read_text())["pitch"]
    # Every recording tracks in tune, so "where the truth is in tune" covers all notes.
    assert tracked["sing_where_truth_in_tune"]["total"] == n
    assert tracked["sing_where_truth_in_tune"]["in_tune"] == tracked["sing"]["in_tune"]
    results = json.loads((report / "results.json").read_text())
    assert results["table"]["silence"]["test"]["spectral"] == pytest.approx(silence, rel=1e-5)
    for png in ("examples.png", "families.png", "loss.png"):
        assert (report / png).read_bytes()[:8] == PNG
    assert results["showcase"]["families"] == ["piano", "strings"]
    wav, rate = sf.read(report / "audio" / "note1-truth.wav")
    assert rate == RATE and len(wav) == 64000 and np.abs(wav).max() > 0.05
    assert not list(report.parent.glob(".rep.*"))      # no temporary folder left behind


def test_baseline_beats_silence_on_harmonic_tones(report):
    results = json.loads((report / "results.json").read_text())
    base = results["baseline"]["test"]["spectral"]
    assert base < 0.5 * results["table"]["silence"]["test"]["spectral"]
    assert results["baseline"]["other_velocity"] == 0
    text = (report / "report.md").read_text()
    assert re.search(r"\*\*(SING|the baseline) is better\*\*", text)
    # An untrained tiny model must lose to resampled real tones.
    assert "**the baseline is better**" in text


def test_vocabulary_mismatch_is_a_clear_error(dataset, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other.safetensors", ["soft_piano_000", "tuba_058"])
    with pytest.raises(DatasetError, match="do not match the checkpoint"):
        run(other, tmp_path / "rep", data=dataset)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["eval", str(other), "--data", str(dataset), "--out", str(tmp_path / "r2")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "tuba_058" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists() and not (tmp_path / "r2").exists()


def test_bad_inputs(dataset, checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        run(tmp_path / "missing.safetensors", tmp_path / "rep", data=dataset)
    single = make_dataset(tmp_path / "one-pitch", pitches=[60])
    with pytest.raises(DatasetError, match="no test notes"):
        run(checkpoint, tmp_path / "rep", data=single)
    with pytest.raises(DatasetError, match="examples.json is missing"):
        run(checkpoint, tmp_path / "rep")        # provenance names dataset "test": not there
    (tmp_path / "log.jsonl").write_text("{}\n")
    with pytest.raises(SingsynthError, match="log.jsonl:1"):
        run(checkpoint, tmp_path / "rep", data=dataset, log=tmp_path / "log.jsonl")
    assert not (tmp_path / "rep").exists()
    (tmp_path / "exists").mkdir()
    with pytest.raises(SingsynthError, match="-f"):
        run(checkpoint, tmp_path / "exists", data=dataset)
    (tmp_path / "log.bin").write_bytes(bytes(range(256)))
    with pytest.raises(SingsynthError, match="log.bin: not a text file"):
        run(checkpoint, tmp_path / "rep", data=dataset, log=tmp_path / "log.bin")
    with pytest.raises(ConfigError, match="--device 'tpu' is unknown"):
        run(checkpoint, tmp_path / "rep", data=dataset, device="tpu")
    assert not (tmp_path / "rep").exists()


def test_force_replaces_a_report_but_never_a_folder_of_something_else(dataset, checkpoint,
                                                                      tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("years of work")
    with pytest.raises(SingsynthError, match="not a singsynth report"):
        run(checkpoint, precious, data=dataset, force=True, notes=2, examples=1)
    assert (precious / "chapter1.txt").read_text() == "years of work"


def test_plot_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"stage": "e2e", "epoch": 1, "train_loss": 0.2, "test_spectral": 0.25}\n')
    assert plot_log(log, tmp_path / "loss.png").read_bytes()[:8] == PNG
    log.write_text("not json\n")
    with pytest.raises(SingsynthError, match="log.jsonl:1"):
        plot_log(log, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
