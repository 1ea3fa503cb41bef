"""The look-ahead limiter: never above the ceiling, transparent below it, the same samples
for any block sizes, smooth gain."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from singsynth.engine import Synth
from singsynth.engine.limiter import AHEAD, Limiter
from singsynth.generation.testing import SineSource

ROOT = Path(__file__).resolve().parents[1]


def limit(x, blocks, sample_rate=48000):
    """`x` (n, 2) through a fresh Limiter in blocks cycling through `blocks` -> (output, limiter)."""
    lim = Limiter(sample_rate)
    out, i, k = [], 0, 0
    while i < len(x):
        n = blocks[k % len(blocks)]
        out.append(lim.process(x[i:i + n].copy()))
        i, k = i + n, k + 1
    return np.concatenate(out), lim


def loud_signal(seconds=1.0, sr=48000, seed=0):
    """Noise and sines with bursts 2-100x over full scale, silences and single spikes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.stack([0.4 * np.sin(2 * np.pi * 110 * t), 0.4 * np.sin(2 * np.pi * 170 * t)], 1)
    x += 0.2 * rng.standard_normal((n, 2))
    x[n // 10:n // 5] *= 6
    x[n // 3:n // 3 + 500] = 0
    x[n // 2] = (100.0, -3.0)
    x[n // 2 + 9] = (-7.0, 0.0)
    return x.astype(np.float32)


def test_latency_is_under_a_millisecond():
    for sr in (16000, 22050, 44100, 48000, 96000, 192000):
        assert 0 < Limiter(sr).latency / sr < 0.001, sr
    assert Limiter(48000).latency == 31


@pytest.mark.parametrize("seed", [0, 1])
def test_the_same_input_in_any_block_sizes_gives_the_same_samples_under_the_ceiling(seed):
    x = loud_signal(seed=seed)
    ref, lim = limit(x, [256])
    assert np.abs(ref).max() <= lim.ceiling
    assert np.abs(ref).max() > lim.ceiling - 1e-3  # limited to the ceiling, not below it
    assert lim.active_blocks > 0
    for blocks in ([64], [1024], [8192], [1, 7, 300, 64, 8192, 1000, 33]):
        out, _ = limit(x, blocks)
        assert np.array_equal(out, ref), blocks


def test_below_the_ceiling_the_output_is_the_input_delayed_bit_for_bit():
    rng = np.random.default_rng(2)
    lim = Limiter(48000)
    x = rng.uniform(-1, 1, (48000, 2)).astype(np.float32) * np.float32(lim.ceiling * 0.9999)
    out, lim = limit(x, [64, 1000])
    d = lim.latency
    assert np.all(out[:d] == 0)
    assert np.array_equal(out[d:], x[:-d])
    assert lim.active_blocks == 0


class Unlimited:
    """Stands in for the limiter: the mix as it is."""
    def process(self, block):
        return block


def test_a_single_quiet_note_through_the_synth_is_the_mix_exactly_delayed():
    outs = []
    for limited in (True, False):
        synth = Synth(SineSource(), 48000, offline=True)
        if not limited:
            synth.limiter = Unlimited()
        synth.note_on(0, 60, 100, offset=5)
        outs.append(np.concatenate([synth.process(300) for _ in range(100)]))
    d = synth.latency
    assert np.abs(outs[1]).max() > 0.1 and np.array_equal(outs[0][d:], outs[1][:-d])


def test_the_gain_moves_smoothly_and_comes_back_to_exactly_one():
    """A constant level, 4x over the ceiling for 0.1 s: the gain (output / input) falls
    along the look-ahead, holds at ceiling / level, recovers, and is exactly 1 again."""
    sr = 48000
    x = np.full((2 * sr, 2), 0.5, np.float32)
    x[sr // 2:sr // 2 + sr // 10] = 4.0
    out, lim = limit(x, [256], sr)
    d = lim.latency
    gain = out[d:, 0].astype(np.float64) / x[:-d, 0]
    assert np.abs(out).max() <= lim.ceiling
    attack = lim.frame * AHEAD
    assert np.abs(np.diff(gain)).max() <= 1.0 / attack  # no step: at most 1 over the attack
    held = gain[sr // 2:sr // 2 + sr // 10]
    assert np.allclose(held, lim.ceiling / 4.0, rtol=1e-5)
    assert np.all(gain[:sr // 2 - attack - lim.frame] == 1.0)  # until the look-ahead sees it
    after = gain[sr // 2 + sr // 10:]
    assert np.all(np.diff(after) >= 0)  # the release only rises
    assert after[int(0.05 * sr)] < 0.95  # ... over tens of ms, not at once
    assert np.all(after[int(0.8 * sr):] == 1.0)  # and is exactly 1 again within 0.8 s


def gm_source():
    """A sine source with the GM preset's instrument names (the default model's)."""
    preset = yaml.safe_load((ROOT / "presets" / "gm.yaml").read_text())
    names = {preset["defaults"]["instrument"]}
    patches = [*preset["programs"].values(), *preset["channels"].values()]
    names |= {p["instrument"] for p in patches if isinstance(p["instrument"], str)}
    return SineSource(instruments=sorted(names), note_samples=8000)


def test_the_fuzz_campaigns_loud_case_stays_under_the_ceiling():
    """15 channels x 24 notes at velocity 127 through the GM preset: the case that reached
    full scale through the old soft limiter (1,752 samples at |x| >= 0.999)."""
    outs = []
    for block in (256, 8192):
        synth = Synth(gm_source(), 48000, "gm", offline=True)
        for c in [c for c in range(16) if c != 9]:
            synth.program_change(c, 8 * c)
            synth.control_change(c, 7, 127)
            for p in range(40, 88, 2):
                synth.note_on(c, p, 127, offset=1 + c)
        out = np.concatenate([synth.process(block) for _ in range(48000 // block + 1)])
        assert np.abs(out).max() <= synth.limiter.ceiling
        assert np.abs(out).max() > 0.9
        assert np.count_nonzero(np.abs(out) >= 0.999) == 0
        assert synth.stats()["limiter_blocks"] > 0
        outs.append(out[:48000])
    assert np.allclose(outs[0], outs[1], rtol=0, atol=1e-5)  # mixing rounding apart
