"""Live timbre morphing (issue 24): a controller sweeps a held note between instruments.

Exact tests use the engine's sine source (instrument 0 a pure tone, instrument 2 adds its
4th harmonic, linearly in the blend weight); one test plays the shipped default model.
"""
import io

import mido
import numpy as np
import pytest

from singsynth.engine import Synth
from singsynth.engine.morph import (GLIDE, position, prewarm_steps, start_key, step_blends,
                                    weights_at)
from singsynth.errors import ConfigError
from singsynth.generation.testing import SineSource
from singsynth.presets import Morph, load_preset, parse_preset

SR = 16000
BLOCK5 = 80                     # 5 ms at 16 kHz
INSTRUMENTS = ["piano", "organ", "guitar", "strings"]
MORPH = {"defaults": {"morph": {"instruments": ["piano", "guitar"]}}}
PLAIN_A = {"defaults": {"instrument": "piano"}}
PLAIN_B = {"defaults": {"instrument": "guitar"}}
PITCH = 69                      # 440 Hz; the guitar adds 1760 Hz


def synth(preset, source=None, **kw):
    source = source or SineSource(note_samples=2 * SR)
    return Synth(source, SR, parse_preset(preset, source.instruments), offline=True, **kw)


def play(preset, events, total, block=BLOCK5, source=None):
    """Drive an offline synth block by block; `events`: (sample, "on"|"cc", value) -> left channel."""
    s = synth(preset, source)
    out, i = [], 0
    events = sorted(events)
    for start in range(0, total, block):
        while i < len(events) and events[i][0] < start + block:
            at, kind, value = events[i]
            if kind == "on":
                s.note_on(0, PITCH, 100, offset=at - start)
            else:
                s.control_change(0, 1, value, offset=at - start)
            i += 1
        out.append(s.process(min(block, total - start))[:, 0])
    return np.concatenate(out)


def sweep(start, every, frm=0, to=127):
    step = 1 if to >= frm else -1
    return [(start + i * every, "cc", v) for i, v in enumerate(range(frm, to + step, step))]


def block_db(x, block=BLOCK5):
    rms = np.sqrt(np.mean(x[:len(x) // block * block].reshape(-1, block) ** 2, axis=1))
    return 20 * np.log10(rms + 1e-12)


def harmonic_ratio(x, sr=SR, f=440.0, h=4):
    """Amplitude of the `h`-th harmonic over the fundamental's in `x` (Hann window)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    bin_of = lambda hz: int(round(hz * len(x) / sr))
    return spec[bin_of(h * f)] / spec[bin_of(f)]


def spectrum(x):
    return np.log(np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-6)


# ---- the grid ----------------------------------------------------------------------------

def test_grid_ends_are_the_instruments_and_steps_are_even_blends():
    morph = parse_preset(MORPH, INSTRUMENTS).defaults.morph
    assert morph == Morph(1, (((0, 1.0),), ((2, 1.0),)), 16, 0.25)
    blends = step_blends(morph)
    assert blends[0] == ((0, 1.0),) and blends[-1] == ((2, 1.0),)  # plain patches' keys
    assert blends[5] == ((0, round(10 / 15, 6)), (2, round(5 / 15, 6)))
    assert position(morph, 0) == 0 and position(morph, 127) == 15
    assert weights_at(7.25) == ((7, 0.75), (8, 0.25)) and weights_at(15.0) == ((15, 1.0),)
    mixed = {"guitar": 1, "strings": 1}
    three = parse_preset({"defaults": {"morph": {"instruments": ["piano", "organ", mixed]}}},
                         INSTRUMENTS).defaults.morph
    assert three.steps == 17 and step_blends(three)[8] == ((1, 1.0),)  # lands on the middle one
    assert step_blends(three)[16] == ((2, 0.5), (3, 0.5))
    assert prewarm_steps(morph) == [0, 5, 10, 15]
    assert prewarm_steps(Morph(1, morph.instruments, 16, 0.0)) == [0, 15]
    assert prewarm_steps(Morph(1, morph.instruments, 16, 1.0)) == list(range(16))


def test_prewarm_covers_the_configured_share_of_the_grid():
    preset = {"defaults": {"morph": {"instruments": ["piano", "guitar"], "prewarm": 0.25},
                           "prewarm": [60, 61]}}
    s = synth(preset)
    keys = s.prewarm_keys()
    plain = synth({"defaults": {"instrument": "piano", "prewarm": [60, 61]}}).prewarm_keys()
    assert len(keys) == 4 * len(plain)  # each pitch and velocity at 4 of the 16 steps
    blends = step_blends(s.preset.defaults.morph)
    assert {k.instrument for k in keys} == {blends[k] for k in (0, 5, 10, 15)}


# ---- playing -------------------------------------------------------------------------------

def test_a_held_note_under_a_sweep_turns_from_a_into_b_without_clicks_or_level_jumps():
    total, first, every = int(1.5 * SR), 1600, 96          # 0 -> 127 from 0.1 s over 0.76 s
    events = [(0, "on", 0)] + sweep(first, every)
    morph = play(MORPH, events, total)
    a = play(PLAIN_A, [(0, "on", 0)], total)
    b = play(PLAIN_B, [(0, "on", 0)], total)
    latency = int(np.flatnonzero(a)[0])  # what the bus adds (limiter look-ahead), if anything
    settled = first + 127 * every + int(GLIDE * SR) + latency
    # It is A until the wheel moves and exactly B once it is up: one note, never restarted.
    assert np.array_equal(morph[:first], a[:first])
    assert np.array_equal(morph[settled:], b[settled:])
    # Closest by spectrum to A at the start and to B at the end of the sweep.
    for at, near, far in ((first - 1024, a, b), (settled, b, a)):
        got = spectrum(morph[at:at + 1024])
        assert np.linalg.norm(got - spectrum(near[at:at + 1024])) < \
            0.5 * np.linalg.norm(got - spectrum(far[at:at + 1024]))
    # In between, the timbre moves steadily: the 4th harmonic grows from 0 to B's.
    ratios = [harmonic_ratio(morph[t:t + 1024]) for t in range(first, settled - 1024, 1024)]
    assert ratios[0] < 0.05 and ratios[-1] > 0.25 and np.all(np.diff(ratios) > 0)
    # Level between 5 ms blocks moves no more than the plain notes' own decay does.
    start = 2 * BLOCK5  # past the onset
    jumps = [np.abs(np.diff(block_db(x[start:]))).max() for x in (morph, a, b)]
    assert jumps[0] <= max(jumps[1:]) + 1e-3, jumps
    # No click: no sample step larger than the plain notes' largest.
    steps = [np.abs(np.diff(x[start:])).max() for x in (morph, a, b)]
    assert steps[0] <= max(steps[1:]), steps


def test_a_jump_glides_from_the_events_own_sample():
    total, at = SR, 4000  # where both partials peak: an abrupt switch would step by B - A
    glide = int(GLIDE * SR)
    morph = play(MORPH, [(0, "on", 0), (at, "cc", 127)], total)
    a = play(PLAIN_A, [(0, "on", 0)], total)
    b = play(PLAIN_B, [(0, "on", 0)], total)
    latency = int(np.flatnonzero(a)[0])  # what the bus adds (limiter look-ahead), if anything
    changed = int(np.flatnonzero(morph != a)[0])
    assert changed == at + latency  # the very sample of the controller change
    assert np.array_equal(morph[at + latency + glide:], b[at + latency + glide:])
    window = slice(at + latency - 100, at + latency + glide + 100)
    steps = [np.abs(np.diff(x[window])).max() for x in (morph, a, b)]
    assert steps[0] <= max(steps[1:]), steps
    # A click is a kink: the second difference would jump too (it does with no glide).
    bends = [np.abs(np.diff(x[window], 2)).max() for x in (morph, a, b)]
    assert bends[0] <= max(bends[1:]), bends


@pytest.mark.parametrize("value", [0, 64, 127])
def test_a_new_note_starts_at_the_controllers_position(value):
    total = SR // 2
    got = play(MORPH, [(0, "cc", value), (0, "on", 0)], total)
    x = got[800:800 + 2048]
    assert harmonic_ratio(x) == pytest.approx(0.3 * value / 127, abs=0.01)
    if value == 127:
        assert np.array_equal(got, play(PLAIN_B, [(0, "on", 0)], total))


def test_a_bent_note_held_into_its_sustain_loop_morphs_without_gaps():
    """Steps read through the sustain loop and the pitch-bend resampler as the voice's own."""
    source = SineSource(note_samples=SR // 2)  # a 0.5 s note: the loop from 0.25 s
    total = 2 * SR
    s = synth(MORPH, source)
    s.control_change(0, 1, 64)  # between two steps from the start
    s.note_on(0, PITCH, 100)
    out = [s.process(BLOCK5)[:, 0] for _ in range(SR // BLOCK5)]
    s.pitch_bend(0, 1500)
    for i in range(SR // BLOCK5):
        if i % 8 == 0:
            s.control_change(0, 1, 64 + i // 8)
        out.append(s.process(BLOCK5)[:, 0])
    got = np.concatenate(out)
    assert s.stats()["voices"] == 1 and len(s.voices[0].parts) <= 3
    plain = play(PLAIN_B, [(0, "on", 0)], total, source=source)
    start = 4 * BLOCK5
    assert block_db(got[start:]).min() > block_db(plain[start:]).min() - 6  # no gap
    assert np.abs(np.diff(got[start:])).max() <= 1.2 * np.abs(np.diff(plain[start:])).max()


XY = {"defaults": {"morph": {"cc": 1, "cc2": 2, "instruments": INSTRUMENTS}}}


def play_xy(events, total):
    """As `play`, events (sample, "on" | 1 | 2, value): controllers 1 and 2."""
    s = synth(XY)
    out, i = [], 0
    events = sorted(events, key=lambda e: e[0])
    for start in range(0, total, BLOCK5):
        while i < len(events) and events[i][0] < start + BLOCK5:
            at, what, value = events[i]
            if what == "on":
                s.note_on(0, PITCH, 100, offset=at - start)
            else:
                s.control_change(0, what, value, offset=at - start)
            i += 1
        out.append(s.process(min(BLOCK5, total - start))[:, 0])
    return np.concatenate(out)


def test_an_xy_pad_morphs_between_four_corner_instruments():
    morph = parse_preset(XY, INSTRUMENTS).defaults.morph
    assert morph.steps == 8 and morph.cc2 == 2 and len(step_blends(morph)) == 64
    assert prewarm_steps(morph) == sorted(j * 8 + i for i in (0, 2, 5, 7) for j in (0, 2, 5, 7))
    total = SR // 2
    for (x, y), corner in zip(((0, 0), (127, 0), (0, 127), (127, 127)), INSTRUMENTS):
        got = play_xy([(0, 1, x), (0, 2, y), (0, "on", 0)], total)
        assert np.array_equal(got, play({"defaults": {"instrument": corner}}, [(0, "on", 0)], total))
    # Parked in the middle: a quarter of each corner (instrument i adds harmonic i + 2).
    got = play_xy([(0, 1, 64), (0, 2, 64), (0, "on", 0)], total)[800:800 + 2048]
    for h in (3, 4, 5):
        assert harmonic_ratio(got, h=h) == pytest.approx(0.3 * (64 / 127) * (63 / 127), abs=0.01)
    # A held note driven across the pad ends exactly as the far corner, without a click.
    glide = int(GLIDE * SR)
    moves = [(4000 + 64 * v, 1, v) for v in range(128)] + [(4000 + 64 * v, 2, v) for v in range(128)]
    total = 4000 + 64 * 128 + 3 * glide
    got = play_xy([(0, "on", 0)] + moves, total)
    far = play({"defaults": {"instrument": "strings"}}, [(0, "on", 0)], total)
    near = play({"defaults": {"instrument": "piano"}}, [(0, "on", 0)], total)
    assert np.array_equal(got[-glide:], far[-glide:])
    steps = [np.abs(np.diff(x[400:])).max() for x in (got, near, far)]
    assert steps[0] <= max(steps[1:]), steps


@pytest.mark.parametrize("generator", ["thread", "process"])  # render and tests; live play
def test_a_cold_step_keeps_the_nearest_ready_one_until_it_arrives(generator):
    from tests.engine_fixtures import pump
    source = SineSource(note_samples=2 * SR)
    preset = parse_preset(MORPH, source.instruments)
    ref_a = play(PLAIN_A, [(0, "on", 0)], 2 * SR)
    ref_b = play(PLAIN_B, [(0, "on", 0)], 2 * SR)
    with Synth(source, SR, preset, generator=generator, cold="stream") as s:
        s.prepare([start_key(preset.defaults.morph, s._key(preset.defaults, PITCH, 100),
                             bytearray(128))],
                  progress=False)
        s.note_on(0, PITCH, 100)
        blocks = [s.process(256)]
        s.control_change(0, 1, 127)
        blocks += pump(s, lambda out: not s.voices[0].waiting, limit=20.0)
        blocks += [s.process(256) for _ in range(4)]
    got = np.concatenate(blocks)[:, 0]
    n = 256
    # The block of the move: step 15 is not made yet, so the voice stays exactly A.
    assert np.allclose(got[n:2 * n], ref_a[n:2 * n], atol=1e-6)
    assert s.stats()["stalls"] == 0
    # Once it arrived, the voice glided to B (and is B from then on).
    end = len(got)
    assert end < 2 * SR  # (it took well under 1 s even on a loaded machine)
    assert np.allclose(got[end - n:end], ref_b[end - n:end], atol=1e-6)


# ---- presets --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,key,allowed", [
    ("defaults: {morph: {instruments: [piano, trumpet]}}", "defaults.morph.instruments[1]",
     "piano, organ, guitar, strings"),
    ("defaults: {morph: {cc: 7, instruments: [piano, organ]}}", "defaults.morph.cc",
     "not 6, 7, 10, 11"),
    ("channels:\n  2: {morph: {cc: 200, instruments: [piano, organ]}}", "channels.2.morph.cc",
     "an integer from 1 to 119"),
    ("defaults: {morph: {instruments: [piano]}}", "defaults.morph.instruments", "2 to 4"),
    ("defaults: {morph: {instruments: [0, 1, 2, 3, 0]}}", "defaults.morph.instruments", "2 to 4"),
    ("defaults: {morph: {steps: 4, instruments: [0, 1]}}", "defaults.morph.steps",
     "an integer from 8 to 32"),
    ("defaults: {morph: {prewarm: 2, instruments: [0, 1]}}", "defaults.morph.prewarm",
     "a number from 0.0 to 1.0"),
    ("defaults: {morph: {speed: 2, instruments: [0, 1]}}", "defaults.morph.speed",
     "cc, cc2, instruments, steps, prewarm"),
    ("defaults: {morph: {cc2: 2, instruments: [0, 1]}}", "defaults.morph.instruments",
     "exactly 4 with cc2"),
    ("defaults: {morph: {cc: 2, cc2: 2, instruments: [0, 1, 2, 3]}}", "defaults.morph.cc2",
     "another controller than cc"),
    ("defaults: {morph: {cc2: 2, steps: 20, instruments: [0, 1, 2, 3]}}", "defaults.morph.steps",
     "an integer from 4 to 16"),
    ("defaults: {morph: {cc2: 64, instruments: [0, 1, 2, 3]}}", "defaults.morph.cc2",
     "not 6, 7, 10, 11"),
    ("programs:\n  5: {instrument: piano, morph: {instruments: [0, 1]}}", "programs.5.morph",
     "one of instrument or morph"),
    ("defaults: {morph: 3}", "defaults.morph", "{cc: 1, instruments: [A, B]"),
])
def test_bad_morph_presets_are_refused_in_one_line(tmp_path, text, key, allowed):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_preset(str(path), INSTRUMENTS)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and allowed in message
    assert "\n" not in message


def test_render_refuses_a_bad_morph_preset_in_one_line_and_writes_nothing(tmp_path, capsys,
                                                                          tiny_checkpoint):
    from singsynth.cli import main as cli_main
    (tmp_path / "bad.yaml").write_text("defaults: {morph: {cc: 64, instruments: [piano, organ]}}")
    song = tmp_path / "s.mid"
    song.write_bytes(song_bytes())
    with pytest.raises(SystemExit) as info:
        cli_main(["render", str(song), "-o", str(tmp_path / "o.wav"), "--model",
                  str(tiny_checkpoint), "--preset", str(tmp_path / "bad.yaml"), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert info.value.code != 0 and len(err.splitlines()) == 1 and "morph.cc" in err
    assert not (tmp_path / "o.wav").exists()


def test_a_fixed_instrument_below_replaces_a_morph_above():
    preset = parse_preset({"defaults": {"morph": {"instruments": [0, 2]}},
                           "channels": {3: {"instrument": "organ"}}}, INSTRUMENTS)
    assert preset.patch(3, 0).morph is None and preset.patch(3, 0).instrument == ((1, 1.0),)
    assert preset.patch(0, 0).morph is not None and preset.morph_ccs() == {1}


# ---- render ---------------------------------------------------------------------------------

def song_bytes():
    msgs = [mido.Message("control_change", control=1, value=0, time=0)]
    msgs += [mido.Message("note_on", note=p, velocity=90, time=0) for p in (60, 64, 67)]
    for v in range(1, 128, 2):  # a sweep under the held chord, one message per 8 ticks
        msgs.append(mido.Message("control_change", control=1, value=v, time=8))
    msgs.append(mido.Message("note_on", note=72, velocity=100, time=10))  # starts mid-way up
    msgs.append(mido.Message("pitchwheel", pitch=1200, time=3))  # and the bent read path
    msgs += [mido.Message("control_change", control=1, value=127 - v, time=6) for v in range(0, 128, 4)]
    msgs += [mido.Message("note_off", note=p, time=0) for p in (60, 64, 67, 72)]
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack(msgs))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_render_is_deterministic_and_equals_driving_the_synth_block_by_block():
    from singsynth.hosts.midifile import read_midi
    from singsynth.hosts.render import BLOCK, RenderReport, playable_events, render_song
    song = read_midi(song_bytes())
    first = render_song(song, synth(MORPH), tail=0.3)
    again = render_song(song, synth(MORPH), tail=0.3)
    assert np.array_equal(first, again) and np.abs(first).max() > 0.05
    for block in (BLOCK, 300):
        live = synth(MORPH)
        events = playable_events(song, SR, live.preset, RenderReport("x", "y"))
        lag = getattr(live, "latency", 0)  # render drops the limiter's look-ahead delay
        out, start, i = [], 0, 0
        while start < len(first) + lag:
            n = min(block, len(first) + lag - start)
            while i < len(events) and events[i].sample < start + n:
                live.handle(events[i].message, offset=events[i].sample - start)
                i += 1
            out.append(live.process(n))
            start += n
        out = np.concatenate(out)[lag:]
        if block == BLOCK:
            assert np.array_equal(out, first)
        else:  # other blocks: the same events on the same samples, float rounding apart
            assert np.allclose(out, first, rtol=0, atol=1e-6)


# ---- the shipped model and preset ---------------------------------------------------------

def test_the_default_model_sweeps_from_flute_to_overdrive_guitar():
    from singsynth.model.checkpoint import load_model
    from singsynth.model.source import ModelSource
    source = ModelSource(load_model(None))
    shipped = load_preset("morph", list(source.instruments))  # its names are the model's
    morph = shipped.defaults.morph
    names = [source.instruments[b[0][0]] for b in morph.instruments]
    assert names == ["flute_073", "overdrive_guitar_029"]
    preset = {"defaults": {"morph": {"instruments": names, "steps": 8}}}
    total, first, every = int(2.5 * SR), int(0.5 * SR), 120  # sweep 0.5 s .. 1.45 s
    events = [(0, "on", 0)] + sweep(first, every)
    got = play(preset, events, total, source=source)
    a = play({"defaults": {"instrument": names[0]}}, [(0, "on", 0)], total, source=source)
    b = play({"defaults": {"instrument": names[1]}}, [(0, "on", 0)], total, source=source)
    settled = first + 127 * every + int(GLIDE * SR) + 1
    for at, near, far in ((first - 4096, a, b), (settled, b, a)):
        x = spectrum(got[at:at + 4096])
        assert np.linalg.norm(x - spectrum(near[at:at + 4096])) < \
            np.linalg.norm(x - spectrum(far[at:at + 4096]))
    start = 4 * BLOCK5
    steps = [np.abs(np.diff(x[start:])).max() for x in (got, a, b)]
    assert steps[0] <= max(steps[1:]), steps
