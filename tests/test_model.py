"""The SING model: sizes, length arithmetic, overlap-add, generate vs stream."""
import pytest
import torch

from singsynth.model import config as M
from singsynth.model.sing import build

INSTRUMENTS = ["a", "b", "c"]


def lstm_params(inputs, hidden, layers):
    first = 4 * hidden * (inputs + hidden) + 8 * hidden
    return first + (layers - 1) * (4 * hidden * 2 * hidden + 8 * hidden)


def test_paper_size_matches_the_paper():
    cfg = M.get_config("paper")
    model = build("paper", [str(i) for i in range(1006)], with_encoder=False)
    expected = (1006 * 16 + 128 * 8 + 5 * 2 + 265 * 4      # embeddings
                + lstm_params(30, 1024, 3) + 1024 * 128 + 128  # LSTM + linear
                + 128 * 4096 * 9 + 4096 + 2 * (4096 * 4096 + 4096) + 4096 * 1024 + 1)
    assert model.parameter_count() == expected
    # The paper reports 243 MB of float32 weights (MiB).
    assert abs(model.parameter_count() * 4 / 2**20 - 243) < 1.0
    assert cfg.steps == 265


def test_length_arithmetic():
    cfg = M.get_config("paper")
    assert M.samples_to_steps(64000, cfg) == 265
    assert M.steps_to_frames(265, cfg) == 257
    assert M.frames_to_samples(257, cfg) == 65024
    assert M.trim_samples(cfg) == 512
    assert M.encoder_padding(cfg) == 2304
    assert M.steps_to_samples(265, cfg) == 64000
    assert M.first_chunk_steps(256, cfg) == 14
    assert M.receptive_field(cfg) == 8 * 256 + 1024
    with pytest.raises(ValueError):
        M.samples_to_steps(1000, cfg)


def test_decoder_and_encoder_shapes_line_up():
    torch.manual_seed(0)
    model = build("tiny", INSTRUMENTS)
    wave = torch.randn(2, 8192)
    code = model.encoder.encode_note(wave)
    assert code.shape == (2, model.config.latent, 8192 // 256 + 15)
    assert model.decoder(code).shape == (2, 8192)
    assert model.encoder.encode_note(torch.randn(1, 64000)).shape[-1] == 265


def test_squared_hann_overlap_add_is_constant():
    from singsynth.model.modules import squared_hann
    w = squared_hann(1024)
    total = torch.zeros(1024 * 8)
    for start in range(0, len(total) - 1024 + 1, 256):
        total[start:start + 1024] += w
    middle = total[1024:-1024]
    assert torch.allclose(middle, torch.full_like(middle, 1.5), atol=1e-5)


def test_decoder_last_layer_is_an_overlap_add_of_grains():
    torch.manual_seed(0)
    model = build("tiny", INSTRUMENTS)
    dec = model.decoder
    s = torch.randn(1, model.config.latent, 40)
    h = dec.hidden(s)                                   # (1, C, 32 frames)
    grains = torch.einsum("bcf,cw->bfw", h, dec.grain_weight())
    ola = torch.zeros(1, (h.shape[-1] - 1) * 256 + 1024)
    for f in range(h.shape[-1]):
        ola[:, f * 256:f * 256 + 1024] += grains[:, f]
    expected = ola[:, 768 + 512:ola.shape[-1] - 768 - 512] + dec.synth.bias
    assert torch.allclose(dec(s), expected, atol=1e-6)


@pytest.mark.parametrize("name,chunk", [("tiny", 256), ("tiny", 1000), ("small", 256),
                                        ("tiny-harmonic", 256), ("tiny-harmonic", 1000)])
def test_stream_equals_generate(name, chunk):
    torch.manual_seed(0)
    model = build(name, INSTRUMENTS).eval()
    inst, pitch, vel = torch.tensor([0, 2]), torch.tensor([48, 77]), torch.tensor([0.0, 2.5])
    whole = model.generate(inst, pitch, vel)
    chunks = list(model.stream(inst, pitch, vel, chunk=chunk))
    assert all(c.shape == (2, chunk) for c in chunks[:-1])
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == whole.shape == (2, 64000)
    assert (streamed - whole).abs().max() <= 1e-4


def test_stream_follows_new_weights_and_restores_onednn():
    """`stream` caches the windowed grains and turns oneDNN off for short LSTM runs: new
    weights loaded in place must still be used, and the global flag left as it was."""
    torch.manual_seed(0)
    model, other = build("tiny", INSTRUMENTS).eval(), build("tiny", INSTRUMENTS).eval()
    args = (torch.tensor([1]), torch.tensor([60]), torch.tensor([2]))
    before = torch.cat(list(model.stream(*args)), dim=-1)
    model.load_state_dict(other.state_dict())  # copies into the same tensors
    after = torch.cat(list(model.stream(*args)), dim=-1)
    expected = other.generate(*args)
    assert (after - expected).abs().max() <= 1e-4
    assert (before - expected).abs().max() > 1e-3
    saved = torch.backends.mkldnn.enabled
    try:
        for state in (True, False):
            torch.backends.mkldnn.enabled = state
            next(model.stream(*args))
            assert torch.backends.mkldnn.enabled is state
    finally:
        torch.backends.mkldnn.enabled = saved


def test_first_chunk_needs_only_the_receptive_field():
    torch.manual_seed(0)
    model = build("tiny", INSTRUMENTS).eval()
    ran = []
    forward = model.sequence.forward

    def counting(cond, start=0, length=None, hidden=None):
        ran.append(length)
        return forward(cond, start, length, hidden)

    model.sequence.forward = counting
    next(model.stream(torch.tensor([0]), torch.tensor([60]), torch.tensor([1])))
    assert sum(ran) == M.first_chunk_steps(256, model.config) == 14


def test_generate_range_blends_and_velocity_interpolation():
    torch.manual_seed(0)
    model = build("tiny", INSTRUMENTS).eval()
    with torch.no_grad():
        model.decoder.synth.bias.fill_(3.0)          # force values outside [-1, 1]
    out = model.generate(torch.tensor([1]), torch.tensor([60]), torch.tensor([2]))
    assert out.dtype == torch.float32 and out.max() <= 1.0 and out.min() >= -1.0
    torch.manual_seed(0)
    model = build("tiny", INSTRUMENTS).eval()
    by_index = model.generate(torch.tensor([1]), torch.tensor([60]), torch.tensor([2]))
    by_weights = model.generate(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([60]),
                                torch.tensor([2.0]))
    assert torch.allclose(by_index, by_weights, atol=1e-7)
    seq = model.sequence
    half = seq.condition(torch.tensor([0]), torch.tensor([60]), torch.tensor([1.5]))
    low = seq.condition(torch.tensor([0]), torch.tensor([60]), torch.tensor([1]))
    high = seq.condition(torch.tensor([0]), torch.tensor([60]), torch.tensor([2]))
    assert torch.allclose(half, (low + high) / 2, atol=1e-6)
    assert not torch.allclose(low, high)


def harmonics_only(name="tiny-harmonic"):
    """A model whose output is its harmonic bank alone (the decoder's grains zeroed)."""
    torch.manual_seed(0)
    model = build(name, INSTRUMENTS).eval()
    with torch.no_grad():
        model.decoder.synth.weight.zero_()
        model.decoder.synth.bias.zero_()
        model.harmonics.amplitude.bias[0] = 0.0      # audible, not the near-silent start
    return model


@pytest.mark.parametrize("pitch", [33, 60, 81, 100])
def test_harmonics_sound_only_multiples_of_the_pitch_below_the_limit(pitch):
    f0 = 440 * 2 ** ((pitch - 69) / 12)
    wave = harmonics_only().generate(torch.tensor([1]), torch.tensor([pitch]), torch.tensor([2]))[0]
    # One second from the middle of the note, Hann-windowed, zero-padded to 0.25 Hz bins.
    part = wave[24000:40000] * torch.hann_window(16000, periodic=False)
    power = torch.fft.rfft(part, n=64000).abs() ** 2
    freqs = torch.fft.rfftfreq(64000, 1 / 16000)
    assert power.sum() > 1e-3                          # it sounds
    harmonic = torch.round(freqs / f0)
    near = ((freqs - harmonic * f0).abs() <= 3.0) & (harmonic >= 1) & (harmonic <= 8)
    assert power[near].sum() / power.sum() > 0.999
    # Nothing at or above 0.45 x the sample rate: no partial folds back as an alias.
    assert power[freqs >= 0.45 * 16000 + 3].sum() / power.sum() < 1e-6


def test_harmonics_keep_one_phase_across_crops_and_stay_finite_above_nyquist():
    model = harmonics_only()
    inst, pitch, vel = torch.tensor([0, 1, 2]), torch.tensor([45, 70, 127]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        s, _ = model.sequence(model._inputs(inst, pitch, vel))
        s = s.transpose(1, 2)
        whole = model.decode(s, pitch)
        # Crops decoded from their own first step line up with the whole note's samples.
        first = torch.tensor([3, 40, 100])
        crops = torch.stack([model.decode(s[i:i + 1, :, f:f + 32 + 15], pitch[i:i + 1], f[None])[0]
                             for i, f in enumerate(first)])
        batched = model.decode(torch.stack([s[i, :, f:f + 47] for i, f in enumerate(first)]),
                               pitch, first)
    for i, f in enumerate(first.tolist()):
        assert (crops[i] - whole[i, f * 256:(f + 32) * 256]).abs().max() < 1e-5
    assert (batched - crops).abs().max() < 1e-5
    # MIDI 127 (12.5 kHz) has no harmonic below the limit: silence, not NaN.
    assert torch.isfinite(whole).all() and whole[2].abs().max() == 0
