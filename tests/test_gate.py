"""model/gate.py: a note ends in exact silence once it has died away, the same whether it
is generated whole or streamed in chunks of any size."""
import numpy as np
import torch

from singsynth.model.gate import CLOSE_DB, OPEN_DB, TailGate

RATE = 48000
FRAME = RATE // 100


def hit_then_floor(batch=2, seconds=1.0, floor_db=-76.0, seed=0):
    """A 50 ms burst at -20 dBFS decaying into a noise floor at `floor_db` (B, L)."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * RATE)
    t = torch.arange(n) / RATE
    envelope = 0.1 * torch.exp(-t / 0.02) + 10 ** (floor_db / 20)
    return torch.randn(batch, n, generator=g) * envelope


def run(gate, wave, sizes):
    out, start, i = [], 0, 0
    while start < wave.shape[1]:
        n = sizes[i % len(sizes)]
        out.append(gate(wave[:, start:start + n]))
        start, i = start + n, i + 1
    return torch.cat(out, 1)


def test_a_hit_ends_in_exact_silence_after_a_one_frame_fade():
    wave = hit_then_floor()
    out = TailGate(2, RATE)(wave)
    frames = out.reshape(2, -1, FRAME)
    level = 10 * np.log10(wave.reshape(2, -1, FRAME).square().mean(-1).numpy() + 1e-30)
    for b in range(2):
        below = np.flatnonzero(level[b] < CLOSE_DB)[0]   # the first frame under the floor
        assert torch.equal(frames[b, :below + 1], wave.reshape(2, -1, FRAME)[b, :below + 1])
        fade = frames[b, below + 1] / wave.reshape(2, -1, FRAME)[b, below + 1]
        assert torch.allclose(fade, 1 - torch.arange(1, FRAME + 1) / FRAME, atol=1e-6)
        assert (frames[b, below + 2:] == 0).all()
        assert 0.05 < (below + 2) * FRAME / RATE < 0.3   # the hit itself is kept


def test_chunked_and_whole_notes_get_the_same_gains():
    wave = hit_then_floor(batch=3, seed=1)
    whole = TailGate(3, RATE)(wave)
    for sizes in ([256], [7, 1000, 333], [FRAME], [4096, 1]):
        assert torch.equal(run(TailGate(3, RATE), wave, sizes), whole), sizes


def test_quiet_notes_sustained_notes_and_inactive_notes_are_untouched():
    quiet = hit_then_floor(batch=1) * 10 ** ((OPEN_DB - 10 + 20) / 20)   # peak under OPEN_DB
    assert torch.equal(TailGate(1, RATE)(quiet), quiet)
    t = torch.arange(RATE) / RATE
    held = (0.01 * torch.sin(2 * torch.pi * 440 * t))[None]          # -43 dBFS throughout
    assert torch.equal(TailGate(1, RATE)(held), held)
    wave = hit_then_floor()
    out = TailGate(2, RATE, active=torch.tensor([True, False]))(wave)
    assert torch.equal(out[1], wave[1]) and (out[0, -FRAME:] == 0).all()


def test_whole_frames_at_once_match_frame_by_frame():
    """The vectorised path (a chunk of 2+ whole frames) decides as the frame-by-frame one,
    including a gate already closing or silent when the chunk starts."""
    wave = hit_then_floor(batch=4, seed=2)
    wave[2] *= 10 ** (-35 / 20)                          # never loud enough: untouched
    by_frame = run(TailGate(4, RATE, active=torch.tensor([1, 1, 1, 0])), wave, [FRAME])
    for sizes in ([wave.shape[1]], [3 * FRAME, 7 * FRAME + 5, 10 * FRAME], [100, 2 * FRAME]):
        gate = TailGate(4, RATE, active=torch.tensor([1, 1, 1, 0]))
        assert torch.equal(run(gate, wave, sizes), by_frame), sizes
    assert (by_frame[:2, -FRAME:] == 0).all() and torch.equal(by_frame[2:], wave[2:])
