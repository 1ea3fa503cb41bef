"""General MIDI with drums (issue 22): unpitched instruments (no harmonic bank for a kit),
drum notes in a SoundFont dataset, their onsets through the engine and a song's render,
and presets/gm.yaml (program N -> instrument N, channel 10 -> the standard kit)."""
import io
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from singsynth.cli import dataset as dataset_cli
from singsynth.data import NSynthDataset
from singsynth.data import soundfont as sfr
from singsynth.engine import Synth
from singsynth.hosts.midifile import read_midi
from singsynth.hosts.render import render_song
from singsynth.model.checkpoint import load_model, save_model
from singsynth.model.config import get_config
from singsynth.model.sing import SING, decode_parts, is_unpitched, pitched_share
from singsynth.model.source import ModelSource
from singsynth.presets import load_preset, parse_preset
from singsynth.train.stages import EndToEnd

REPO = Path(__file__).resolve().parents[1]
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
needs_fluidsynth = pytest.mark.skipif(not TIMGM.exists() or shutil.which("fluidsynth") is None,
                                      reason="needs fluidsynth and timgm6mb-soundfont (make setup)")
KIT = "drums_standard_000"
VOCAB = ["piano_1_000", KIT, "violin_040"]
SR = 48000


def loud_bank_model(config="tiny-harmonic", instruments=VOCAB) -> SING:
    """A seeded tiny model whose harmonic bank is loud (as a trained one is), so that a
    bank left playing for drums could not hide under the decoder's output."""
    torch.manual_seed(0)
    model = SING(get_config(config), list(instruments)).eval()
    with torch.no_grad():
        model.harmonics.amplitude.bias[0] = 3.0
    return model


def without_bank(model: SING) -> SING:
    """The same weights with no harmonic bank: the decoder's part alone."""
    bare = SING(model.config, model.instruments, model.velocities).eval()
    bare.load_state_dict(model.state_dict())
    bare.harmonics = None
    return bare


# ---- unpitched instruments: the harmonic bank stays silent for drums ----------------------

def test_unpitched_rows_by_name_and_blend_share():
    assert is_unpitched(KIT) and not is_unpitched("piano_1_000")
    model = loud_bank_model()
    assert model.unpitched.tolist() == [0.0, 1.0, 0.0]
    assert pitched_share(model.unpitched, torch.tensor([0, 1, 2])).tolist() == [1.0, 0.0, 1.0]
    blend = torch.tensor([[0.6, 0.2, 0.2], [0.0, 2.0, 0.0]])   # weights need not sum to 1
    assert torch.allclose(pitched_share(model.unpitched, blend), torch.tensor([0.8, 0.0]))
    # A vocabulary without drums: no mask at all, the bank plays as before.
    assert SING(get_config("tiny-harmonic"), ["a", "b"]).pitched(torch.tensor([0, 1])) is None


def test_drum_notes_have_no_harmonic_part():
    model = loud_bank_model()
    bare = without_bank(model)
    inst, pitch, vel = torch.tensor([1, 1, 0]), torch.tensor([38, 69, 69]), torch.tensor([4, 2, 2])
    notes, decoder_only = model.generate(inst, pitch, vel), bare.generate(inst, pitch, vel)
    assert torch.equal(notes[:2], decoder_only[:2])          # kit: the decoder's part alone
    piano_bank = (notes[2] - decoder_only[2]).abs().max().item()
    assert piano_bank > 0.05                                  # the piano's bank does sound
    # Streamed as the engine plays it, and in training's pieces (e2e stage): the same.
    streamed = torch.cat(list(model.stream(inst, pitch, vel, chunk=4096)), dim=1)
    assert torch.allclose(streamed[:2], decoder_only[:2], atol=1e-5)
    _, harm = EndToEnd(model)(inst, pitch, vel, 0, model.config.steps)
    assert harm[:2].abs().max().item() == 0.0 and harm[2].abs().max().item() > 0.05
    # A half-kit blend gets half the bank of the same blend played as if pitched.
    blend = torch.tensor([[0.5, 0.5, 0.0]])
    s, _ = model.sequence(model._inputs(blend, pitch[:1], vel[:1]))
    full = decode_parts(model.decoder, model.harmonics, s.transpose(1, 2), pitch[:1])[1]
    half = decode_parts(model.decoder, model.harmonics, s.transpose(1, 2), pitch[:1], 0,
                        model.pitched(blend))[1]
    assert torch.allclose(half, 0.5 * full, atol=1e-6) and full.abs().max() > 0.05


def test_full_band_drum_notes_have_no_harmonic_part():
    model = loud_bank_model("tiny-fullband")
    bare = without_bank(model)
    inst, pitch, vel = torch.tensor([1, 0]), torch.tensor([42, 60]), torch.tensor([3, 3])
    notes, decoder_only = model.generate(inst, pitch, vel), bare.generate(inst, pitch, vel)
    assert notes.shape == (2, 192000)
    assert torch.equal(notes[0], decoder_only[0])
    assert (notes[1] - decoder_only[1]).abs().max().item() > 0.05


def test_checkpoint_with_a_kit_round_trips_and_adds_no_tensor(tmp_path):
    model = loud_bank_model()
    assert "unpitched" not in model.state_dict()   # old checkpoints load unchanged
    save_model(tmp_path / "kit.safetensors", model, {"stage": "test"})
    loaded = load_model(tmp_path / "kit.safetensors")
    assert loaded.unpitched.tolist() == [0.0, 1.0, 0.0]
    inst, pitch, vel = torch.tensor([1]), torch.tensor([38]), torch.tensor([4])
    assert torch.equal(loaded.generate(inst, pitch, vel), model.generate(inst, pitch, vel))


# ---- dataset: drum keys rendered as short hits with their own decay -----------------------

def test_drum_notes_are_short_hits_in_the_midi_file(tmp_path):
    kit = sfr.Instrument(KIT, "Standard", 128, 0, True)
    piano = sfr.Instrument("piano_1_000", "Piano 1", 0, 0)
    for inst, hold, channel in ((kit, sfr.DRUM_HOLD_MS, 9), (piano, sfr.HOLD_MS, 0)):
        onsets = sfr.write_midi(tmp_path / "n.mid", inst, [(38, 100), (42, 127)])
        t, seen = 0, []
        for msg in mido.MidiFile(tmp_path / "n.mid"):
            t += msg.time * 1000   # one tick is one millisecond, 1,000 ticks a beat
            if msg.type in ("note_on", "note_off"):
                assert msg.channel == channel
                seen.append((msg.type, msg.note, round(t)))
        assert seen == [("note_on", 38, onsets[0]), ("note_off", 38, onsets[0] + hold),
                        ("note_on", 42, onsets[1]), ("note_off", 42, onsets[1] + hold)]
    assert sfr.DRUM_HOLD_MS <= 200 < sfr.HOLD_MS


KEYS = (36, 38, 42, 46, 49)   # kick, snare, closed and open hi-hat, crash


@pytest.fixture(scope="module")
def kit_dataset(tmp_path_factory):
    """`dataset build` of TimGM6mb's piano and standard kit at 5 keys (and the piano at
    C4), velocity 127, read back by the reader: {(instrument, pitch): float32 (64000,)}."""
    out = tmp_path_factory.mktemp("gm-drums") / "data"
    pitches = ",".join(map(str, KEYS + (60,)))
    assert dataset_cli.main(["build", "--soundfont", str(TIMGM), "--out", str(out), "--programs",
                             "0", "--drums", "--pitches", pitches, "--velocities", "127"]) == 0
    notes = {}
    for split in ("train", "test"):
        ds = NSynthDataset(out, split=split)
        for inst, pitch, _, wave in ds:
            notes[(ds.instruments[inst], int(pitch))] = np.asarray(wave)
    return notes


@needs_fluidsynth
def test_drum_keys_read_back_with_their_key_and_length(kit_dataset):
    drums = {pitch: wave for (name, pitch), wave in kit_dataset.items()
             if name == KIT and pitch in KEYS}
    assert sorted(drums) == list(KEYS)    # (key 60 is built too: a bongo in the kit)
    for key, wave in drums.items():
        assert wave.shape == (64000,)
        first = int(np.flatnonzero(np.abs(wave) > 1e-3)[0])
        assert first < 16, f"key {key} starts {first} samples late"   # on its onset
        # A hit with its own decay: 12 dB down after a second (TimGM's crash: 20 dB), and
        # 40 dB down by the last 0.5 s (TimGM6mb: 56-inf), where a held melodic note sounds.
        head = np.sqrt(np.mean(wave[:1600] ** 2))
        assert np.sqrt(np.mean(wave[16000:17600] ** 2)) < head * 0.25, key
        assert np.sqrt(np.mean(wave[56000:] ** 2)) < head * 0.01, key

    def centroid(wave):
        spec = np.abs(np.fft.rfft(wave[:4096]))
        return float((spec * np.fft.rfftfreq(4096, 1 / 16000)).sum() / spec.sum())
    # Each key its own sound: the closed hi-hat is brighter than the kick (4.2 vs 1.8 kHz).
    assert centroid(drums[42]) > 2 * centroid(drums[36])
    piano = kit_dataset[("piano_1_000", 60)]
    assert np.sqrt(np.mean(piano[40000:44000] ** 2)) > 1e-3   # held 3 s: still sounding


# ---- through the engine and the renderer ------------------------------------------------

DRUM_PRESET = {"name": "drums", "defaults": {"instrument": "piano_1_000"},
               "channels": {9: {"instrument": KIT, "release": 0.005}}}


def onset(channel_audio: np.ndarray, threshold: float = 1e-4) -> int:
    return int(np.flatnonzero(np.abs(channel_audio) > threshold)[0])


def test_drum_note_sounds_on_its_note_on_through_the_engine():
    model = loud_bank_model()
    preset = parse_preset(DRUM_PRESET, model.instruments)
    synth = Synth(ModelSource(model, "cpu"), SR, preset, offline=True)
    at = 1000
    synth.note_on(9, 38, 100, offset=at)
    out = np.concatenate([synth.process(256) for _ in range(60)])[:, 0]
    start = at + synth.latency
    assert np.all(out[:start] == 0)
    assert onset(out) - start <= int(0.005 * SR)   # within 5 ms of the note-on
    synth.close()


def drum_song(hits_s, tempo=500_000) -> bytes:
    """A format-0 song: channel 10 hits (key 38, 50 ms long) at `hits_s` seconds."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    ticks_per_s = 480 * 1_000_000 / tempo
    events = []
    for t in hits_s:
        events += [(round(t * ticks_per_s), "note_on"), (round((t + 0.05) * ticks_per_s), "note_off")]
    last = 0
    for tick, kind in sorted(events):
        track.append(mido.Message(kind, channel=9, note=38, velocity=110, time=tick - last))
        last = tick
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_render_puts_drum_hits_where_the_file_puts_them():
    hits = [0.25, 0.8, 1.5]
    model = loud_bank_model()
    preset = parse_preset(DRUM_PRESET, model.instruments)
    synth = Synth(ModelSource(model, "cpu"), SR, preset, offline=True)
    try:
        audio = render_song(read_midi(drum_song(hits)), synth, tail=0.2)[:, 0]
    finally:
        synth.close()
    found = []
    pos = 0
    while True:   # each hit: 50 ms of note, a 5 ms release, then silence
        loud = np.flatnonzero(np.abs(audio[pos:]) > 1e-4)
        if len(loud) == 0:
            break
        found.append((pos + int(loud[0])) / SR)
        pos += int(loud[0]) + int(0.1 * SR)
    assert len(found) == len(hits)
    for want, got in zip(hits, found):
        assert 0 <= got - want <= 0.005, (want, got)


# ---- presets/gm.yaml -------------------------------------------------------------------------

@pytest.mark.skipif(not FLUIDR3.exists(), reason="needs fluid-soundfont-gm (make setup)")
def test_gm_preset_maps_every_program_and_channel_10():
    vocab = [i.name for i in sfr.plan_instruments(FLUIDR3, range(128), drums=True)]
    assert len(vocab) == 129 and vocab[-1] == KIT
    # The model's order may differ (an extended default lists its own 19 first).
    order = vocab[::-1]
    preset = load_preset(REPO / "presets" / "gm.yaml", order)
    assert preset.name == "gm"
    for program in range(128):
        for channel in (0, 15):
            patch = preset.patch(channel, program)
            assert patch.instrument == ((order.index(vocab[program]), 1.0),), program
        assert preset.patch(9, program).instrument == ((order.index(KIT), 1.0),)
    assert preset.patch(9, 0).release == 10.0


def test_split_keeps_every_drum_key_in_train():
    from singsynth.data.split import make_split
    split = make_split({KIT: range(35, 82), "piano_1_000": range(21, 109)})
    assert split["test"][KIT] == [] and split["train"][KIT] == list(range(35, 82))
    assert len(split["test"]["piano_1_000"]) == 9


def test_residual_penalty_spares_drum_notes():
    """The e2e stage's penalty on the decoder's power in the bank's band (residual_weight)
    must not charge a kit, whose decoder is the whole sound."""
    from singsynth.train.stages import residual_share
    torch.manual_seed(0)
    wave = torch.randn(2, 8192)
    pitch = torch.tensor([38, 38])
    both = residual_share(wave, wave, pitch, 8, 16000)
    assert both > 0.5
    spared = residual_share(wave, wave, pitch, 8, 16000, pitched=torch.tensor([1.0, 0.0]))
    assert torch.allclose(spared, both / 2)


def test_kit_repeat_trains_each_kit_note_that_many_times_an_epoch():
    """`kit_repeat` (StageConfig): a drum kit's few notes come back that many times per
    epoch; melodic notes once; 1 leaves the epoch as it was."""
    from singsynth.errors import ConfigError
    from singsynth.train.stages import TrainData, kit_order
    model = loud_bank_model()
    instrument = torch.tensor([0, 1, 2, 1, 0, 2, 2])   # two kit notes (rows 1 and 3)
    train = TrainData(instrument, torch.full((7,), 60), torch.zeros(7, dtype=torch.long),
                      torch.zeros(7, 16))
    assert kit_order(model, train, 1).tolist() == list(range(7))
    order = kit_order(model, train, 4)
    counts = torch.bincount(order, minlength=7).tolist()
    assert counts == [1, 4, 1, 4, 1, 1, 1]
    with pytest.raises(ConfigError, match="kit_repeat"):
        kit_order(model, train, 1001)
    melodic = loud_bank_model(instruments=["piano_1_000", "violin_040"])
    assert kit_order(melodic, train, 4).tolist() == list(range(7))  # no kit: unchanged


def test_melodic_share_trains_a_fixed_subset_of_the_melodic_notes_beside_the_whole_kit():
    """`melodic_share` (StageConfig): an epoch keeps that share of the melodic notes, the
    same ones each time (resume-safe), and every kit note `kit_repeat` times."""
    from singsynth.errors import ConfigError
    from singsynth.train.stages import TrainData, kit_order
    model = loud_bank_model()
    instrument = torch.tensor([0, 2] * 10 + [1, 1])    # 20 melodic notes, 2 kit notes
    n = len(instrument)
    train = TrainData(instrument, torch.full((n,), 60), torch.zeros(n, dtype=torch.long),
                      torch.zeros(n, 16))
    order = kit_order(model, train, 3, melodic_share=0.25)
    counts = torch.bincount(order, minlength=n)
    assert counts[20:].tolist() == [3, 3]
    assert counts[:20].sum() == 5 and counts[:20].max() == 1
    assert torch.equal(order, kit_order(model, train, 3, melodic_share=0.25))
    assert kit_order(model, train, 1, melodic_share=1.0).tolist() == list(range(n))
    with pytest.raises(ConfigError, match="melodic_share"):
        kit_order(model, train, 1, melodic_share=0)


def test_the_noise_band_trains_on_every_kit_note_whatever_every_is():
    """highband.training_rows: every `every`-th melodic note and all of a kit's notes (each
    key is a sound of its own, and a hi-hat is mostly above the core's band)."""
    from singsynth.train.highband import training_rows
    model = loud_bank_model()
    rows = [(i, 60, 0, f"n{n}.wav") for n, i in enumerate([0, 1, 2, 1, 0, 2, 2, 1])]
    chosen, kit = training_rows(model, rows, 3)
    assert [r[3] for r in chosen] == ["n0.wav", "n5.wav", "n1.wav", "n3.wav", "n7.wav"]
    assert [chosen[i][0] for i in kit] == [1, 1, 1]
    melodic = loud_bank_model(instruments=["piano_1_000", "violin_040"])
    assert training_rows(melodic, rows, 3) == (rows[::3], [])


@pytest.mark.skipif(not FLUIDR3.exists(), reason="needs fluid-soundfont-gm (make setup)")
def test_gm_preset_prewarm_fits_the_default_note_cache():
    """Prewarmed notes beyond the cache's budget would evict each other as they arrive."""
    from singsynth.engine.synth import Synth
    from singsynth.generation.testing import SineSource
    vocab = [i.name for i in sfr.plan_instruments(FLUIDR3, range(128), drums=True)]
    source = SineSource(instruments=vocab, note_samples=192000, sample_rate=48000)
    synth = Synth(source, 48000, "gm", offline=True)
    try:
        keys = synth.prewarm_keys()
        assert {k.instrument for k in keys} == {((0, 1.0),), ((128, 1.0),)}
        assert len(keys) * 192000 * 4 <= synth.cache.budget_bytes
    finally:
        synth.close()
