"""The NSynth reader on a hand-made NSynth-format folder, and every bad-data case."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from singsynth.cli import dataset as cli
from singsynth.data import NSynthDataset
from singsynth.errors import DatasetError

# (instrument_str, instrument id, family, source, pitches)
INSTRUMENTS = [("keyboard_acoustic_004", 4, 4, 0, [60, 61, 62, 63, 64]),
               ("bass_synthetic_033", 33, 0, 2, [36, 40]),
               ("flute_acoustic_002", 2, 2, 0, [72])]
VELOCITIES = [25, 127]


def note_wave(pitch, velocity, n=64000, rate=16000):
    """A decaying sine: distinct, known audio for each note."""
    t = np.arange(n) / rate
    freq = 440.0 * 2 ** ((pitch - 69) / 12)
    return (velocity / 160 * np.exp(-t) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_nsynth(root):
    """Write examples.json + audio/*.wav exactly as NSynth publishes them."""
    (root / "audio").mkdir(parents=True)
    examples, note = {}, 0
    for name, inst, fam, src, pitches in INSTRUMENTS:
        for p in pitches:
            for v in VELOCITIES:
                key = f"{name}-{p:03d}-{v:03d}"
                examples[key] = {
                    "note": note, "note_str": key, "instrument": inst, "instrument_str": name,
                    "pitch": p, "velocity": v, "sample_rate": 16000,
                    "instrument_family": fam, "instrument_family_str": "x",
                    "instrument_source": src, "instrument_source_str": "y",
                    "qualities": [0] * 10, "qualities_str": []}
                sf.write(root / "audio" / f"{key}.wav", note_wave(p, v), 16000, subtype="PCM_16")
                note += 1
    (root / "examples.json").write_text(json.dumps(examples))
    return examples


@pytest.fixture
def nsynth(tmp_path):
    root = tmp_path / "nsynth-train"
    make_nsynth(root)
    return root


def edit_examples(root, key, **fields):
    path = root / "examples.json"
    examples = json.loads(path.read_text())
    examples[key].update(fields)
    path.write_text(json.dumps(examples))


def test_reader_yields_index_pitch_velocity_and_audio(nsynth):
    ds = NSynthDataset(nsynth, split="all")
    assert len(ds) == (5 + 2 + 1) * 2
    assert ds.instruments == ["flute_acoustic_002", "keyboard_acoustic_004", "bass_synthetic_033"]
    assert ds.velocities == [25, 50, 75, 100, 127]
    i = ds.keys.index("bass_synthetic_033-040-127")
    inst, pitch, vel, wave = ds[i]
    assert (inst, pitch, vel) == (2, 40, 4)
    assert wave.dtype == torch.float32 and wave.shape == (64000,)
    np.testing.assert_allclose(wave.numpy(), note_wave(40, 127), atol=1 / 32768 + 1e-7)


def test_vocabulary_is_the_same_for_every_split_and_filter(nsynth):
    full = NSynthDataset(nsynth, split="all").instruments
    for kwargs in ({"split": "train"}, {"split": "test"}, {"families": [0]}, {"sources": [2]},
                   {"pitch_range": (70, 80)}):
        assert NSynthDataset(nsynth, **kwargs).instruments == full


def test_pitch_completion_split_on_the_reader(nsynth):
    train, test = NSynthDataset(nsynth, "train"), NSynthDataset(nsynth, "test")
    pairs = lambda ds: {(int(i), int(p)) for i, p in zip(ds.instrument, ds.pitch)}
    assert not pairs(train) & pairs(test)
    assert len(train) + len(test) == 16
    # keyboard (5 pitches) and bass (2) each lose one pitch, at both velocities; flute keeps its one.
    assert len(test) == 4
    assert sorted(set(int(i) for i in test.instrument)) == [1, 2]
    assert (nsynth / "split.json").exists()
    assert NSynthDataset(nsynth, "test").keys == test.keys   # reused, not redrawn


def test_filters(nsynth):
    assert set(NSynthDataset(nsynth, "all", families=[0]).keys) == {
        f"bass_synthetic_033-{p:03d}-{v:03d}" for p in (36, 40) for v in (25, 127)}
    assert len(NSynthDataset(nsynth, "all", sources=[0])) == 12
    assert sorted(set(NSynthDataset(nsynth, "all", pitch_range=(61, 63)).pitch.tolist())) == [61, 62, 63]


def test_arrays_match_items(nsynth):
    ds = NSynthDataset(nsynth, split="all")
    inst, pitch, vel, audio = ds.arrays(workers=2)
    assert audio.shape == (16, 64000) and audio.dtype == torch.float32
    assert inst.dtype == pitch.dtype == vel.dtype == torch.long
    for i in (0, 7, 15):
        a, p, v, w = ds[i]
        assert (int(inst[i]), int(pitch[i]), int(vel[i])) == (a, p, v)
        assert torch.equal(audio[i], w)


def test_audio_file_is_the_split_as_int16_exactly_and_is_decoded_once(nsynth, tmp_path):
    """Training reads splits through this memory map: it must give back exactly what
    `arrays` gives, and be remade when the split's notes change."""
    from singsynth.train.stages import TrainData

    ds = NSynthDataset(nsynth, split="train")
    cache = tmp_path / "cache"
    mapped = ds.audio_file(cache, progress=False)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.int16
    _, _, _, audio = ds.arrays()
    data = TrainData(ds.instrument, ds.pitch, ds.velocity, mapped)
    idx = torch.tensor([len(ds) - 1, 0, 3])
    assert torch.equal(data.notes(idx), audio[idx])
    assert torch.equal(data.notes(slice(1, 4)), audio[1:4])
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"
    stamp = files[0].stat().st_mtime_ns
    again = NSynthDataset(nsynth, split="train").audio_file(cache, progress=False)
    assert np.array_equal(again, mapped) and files[0].stat().st_mtime_ns == stamp
    NSynthDataset(nsynth, split="test").audio_file(cache, progress=False)
    edit_examples(nsynth, "flute_acoustic_002-072-025", qualities_str=["bright"])
    NSynthDataset(nsynth, split="train").audio_file(cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 3 and not list(cache.glob("*.tmp"))


def test_missing_wav_names_the_file(nsynth):
    (nsynth / "audio" / "flute_acoustic_002-072-025.wav").unlink()
    with pytest.raises(DatasetError, match=r"flute_acoustic_002-072-025\.wav: missing WAV"):
        NSynthDataset(nsynth, split="all")
    ds = NSynthDataset(nsynth, split="all", allow_skip=True)
    assert len(ds) == 15 and ds.skipped == 1


@pytest.mark.parametrize("rate,length,message", [(22050, 64000, "sample rate 22050 Hz"),
                                                 (16000, 48000, "48000 samples long")])
def test_wrong_rate_or_length_names_the_file(nsynth, rate, length, message):
    key = "keyboard_acoustic_004-060-127"
    sf.write(nsynth / "audio" / f"{key}.wav", np.zeros(length, np.float32), rate, subtype="PCM_16")
    ds = NSynthDataset(nsynth, split="all")
    with pytest.raises(DatasetError, match=f"{key}.wav: {message}"):
        ds[ds.keys.index(key)]
    with pytest.raises(DatasetError, match=f"{key}.wav: {message}"):
        ds.arrays()
    assert len(NSynthDataset(nsynth, split="all", allow_skip=True)) == 15


def test_malformed_examples_json(nsynth):
    (nsynth / "examples.json").write_text('{"a-060-100": {"pitch": 60,')
    with pytest.raises(DatasetError, match=r"examples.json is not valid JSON"):
        NSynthDataset(nsynth)
    (nsynth / "examples.json").unlink()
    with pytest.raises(DatasetError, match=r"examples.json is missing"):
        NSynthDataset(nsynth)


@pytest.mark.parametrize("fields,message", [
    ({"pitch": None}, "no integer field 'pitch'"),
    ({"velocity": 30}, "velocity 30, not one of"),
    ({"sample_rate": 22050}, "sample_rate 22050"),   # not a rate a dataset may have
    ({"instrument": -1}, "instrument id -1 out of range"),
    ({"instrument": 5}, "id 5, but it has id 4 elsewhere"),
])
def test_bad_entries_name_the_note(nsynth, fields, message):
    edit_examples(nsynth, "keyboard_acoustic_004-062-025", **fields)
    with pytest.raises(DatasetError, match=rf"examples.json: note 'keyboard_acoustic_004-062-025' .*{message}"):
        NSynthDataset(nsynth, split="all")


def test_instrument_outside_given_vocabulary(nsynth):
    vocab = ["keyboard_acoustic_004", "bass_synthetic_033"]
    with pytest.raises(DatasetError, match="flute_acoustic_002' is out of range of the 2-instrument"):
        NSynthDataset(nsynth, "all", instruments=vocab)
    ds = NSynthDataset(nsynth, "all", instruments=vocab, allow_skip=True)
    assert len(ds) == 14 and set(ds.instrument.tolist()) == {0, 1}


def test_unknown_split(nsynth):
    with pytest.raises(DatasetError, match="split 'valid' unknown"):
        NSynthDataset(nsynth, split="valid")


def test_cli_check_lists_each_problem_and_fails(nsynth, capsys):
    assert cli.main(["check", str(nsynth)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    (nsynth / "audio" / "flute_acoustic_002-072-025.wav").unlink()
    sf.write(nsynth / "audio" / "bass_synthetic_033-036-025.wav", np.zeros(100, np.float32), 16000)
    edit_examples(nsynth, "keyboard_acoustic_004-062-025", velocity=30)
    assert cli.main(["check", str(nsynth)]) == 1
    out = capsys.readouterr().out
    assert "flute_acoustic_002-072-025.wav: missing WAV" in out
    assert "bass_synthetic_033-036-025.wav: 100 samples long" in out
    assert "keyboard_acoustic_004-062-025' has velocity 30" in out
    assert "3 problem(s)" in out


def test_cli_info(nsynth, capsys):
    assert cli.main(["info", str(nsynth)]) == 0
    out = capsys.readouterr().out
    assert "3 instruments, 16 notes, 0.02 hours" in out
    assert "12 train notes, 4 test notes" in out
    assert "33 bass_synthetic_033 x: 4 notes, pitches 36-40 (2)" in out


def test_a_dataset_mixing_rates_is_one_line(nsynth):
    """16 and 44.1 kHz are both rates a dataset may have, but not both at once."""
    edit_examples(nsynth, "keyboard_acoustic_004-062-025", sample_rate=44100)
    with pytest.raises(DatasetError, match=r"at 44100 Hz \('keyboard_acoustic_004-062-025'\)"
                                           r".*one --sample-rate"):
        NSynthDataset(nsynth, split="all")
