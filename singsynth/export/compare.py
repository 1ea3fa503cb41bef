"""How close a sampler's rendering of an export is to singsynth's own: for the tests and
benchmarks/export.py (needs librosa, the `eval` extra).

Both renderings are mono-mixed and scaled to the same RMS before comparing: players differ
in master gain (FluidSynth's 0.2, its CC7 curve, its pan law) while the question is
whether the same notes sound.
"""
from __future__ import annotations

import time

import numpy as np

N_MELS = 64
FLOOR_DB = -80.0  # below the loudest mel bin: silence is compared as silence


def mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) -> float64 (samples,)."""
    audio = np.asarray(audio, dtype=np.float64)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def log_mel(audio: np.ndarray, sr: int) -> np.ndarray:
    """dB mel spectrogram (N_MELS, frames), 2048-point FFT, hop 512, floored FLOOR_DB."""
    import librosa

    mel = librosa.feature.melspectrogram(y=audio.astype(np.float32), sr=sr, n_fft=2048,
                                         hop_length=512, n_mels=N_MELS, fmax=min(8000, sr / 2))
    db = 10 * np.log10(np.maximum(mel, 1e-12))
    return np.maximum(db, db.max() + FLOOR_DB)


def log_mel_distance(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Mean absolute difference in dB between the log-mel spectrograms of two renderings
    (same rate; the shorter is zero-padded; each scaled to unit RMS first)."""
    a, b = mono(a), mono(b)
    n = max(len(a), len(b))
    a, b = np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))
    a, b = a / max(np.sqrt(np.mean(a ** 2)), 1e-12), b / max(np.sqrt(np.mean(b ** 2)), 1e-12)
    ma, mb = log_mel(a, sr), log_mel(b, sr)
    floor = max(ma.max(), mb.max()) + FLOOR_DB
    return float(np.mean(np.abs(np.maximum(ma, floor) - np.maximum(mb, floor))))


def peak_hz(audio: np.ndarray, sr: int, start: float, end: float, near_hz: float) -> float:
    """The strongest spectral peak within half a semitone of `near_hz` in audio[start:end]
    (seconds), refined by parabolic interpolation on a zero-padded Hann spectrum (Hz)."""
    seg = mono(audio)[int(start * sr):int(end * sr)]
    n = 1 << int(np.ceil(np.log2(len(seg) * 8)))
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    band = np.where((freqs > near_hz * 2 ** (-1 / 24)) & (freqs < near_hz * 2 ** (1 / 24)))[0]
    k = band[np.argmax(spec[band])]
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-20)
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return float((k + shift) * sr / n)


def cents(f: float, ref: float) -> float:
    """Interval from `ref` to `f` in cents."""
    return float(1200 * np.log2(f / ref))


def fluidsynth_render(sf2, midi, out, sample_rate: int = 48000) -> np.ndarray:
    """Render `midi` with FluidSynth's fast file renderer and the SoundFont `sf2` into the
    WAV `out` -> float64 (samples, 2). Reverb and chorus off: singsynth adds neither.
    RuntimeError if FluidSynth warns about the SoundFont."""
    import subprocess

    import soundfile

    done = subprocess.run(["fluidsynth", "-ni", "-R", "0", "-C", "0", "-F", str(out), "-r",
                           str(sample_rate), str(sf2), str(midi)], check=True,
                          capture_output=True, text=True, timeout=600)
    # FluidSynth names what it finds wrong in a SoundFont as warnings or errors; the only
    # one expected is the drum channel's missing bank 128 (an export has no drum kit).
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if ("warning" in line or "error" in line) and "channel 9" not in line]
    if complaints:
        raise RuntimeError(f"FluidSynth complained about {sf2}: {complaints[0]}")
    audio, sr = soundfile.read(out)
    assert sr == sample_rate, (sr, sample_rate)
    return audio


def sfizz_render(sfz, midi, sample_rate: int = 48000, tail: float = 3.0) -> np.ndarray:
    """Play `midi`'s notes (all channels) through sfizz (pysfizz) with the .sfz file `sfz`
    -> float32 (samples, 2), `tail` seconds past the last event. Each event lands on its
    sample (sfizz takes a delay inside its block)."""
    import pysfizz

    from singsynth.hosts.midifile import read_midi

    block = 1024
    synth = pysfizz.Synth(sample_rate, block)
    if not synth.load_sfz_file(str(sfz)):
        raise RuntimeError(f"sfizz could not load {sfz}")
    sfz_synth = synth._synth  # the bindings' synth: note events with a delay in the block
    # Offline: sfizz streams a sample past its preloaded head from a background thread, and
    # a loop rendering faster than real time outran it (a note read 84 cents flat, one run
    # in four, with 48 kHz samples). Freewheeling makes each block wait for its data.
    sfz_synth.enable_freewheeling()
    events = [e for e in read_midi(midi).timed_events(sample_rate)
              if e.message.type in ("note_on", "note_off")]

    def play():
        out, i = [], 0
        for start in range(0, events[-1].sample + int(tail * sample_rate), block):
            while i < len(events) and events[i].sample < start + block:
                msg, delay = events[i].message, events[i].sample - start
                if msg.type == "note_on" and msg.velocity:
                    sfz_synth.note_on(delay, msg.note, msg.velocity)
                else:
                    sfz_synth.note_off(delay, msg.note, 0)
                i += 1
            left, right = sfz_synth.render_block()
            out.append(np.stack([left, right], axis=1))
        return np.concatenate(out)

    # Even freewheeling, sfizz's loader thread fell behind on a loaded machine (a note of
    # the first pass silent or partly so: read 48-84 cents off). The first pass brings every
    # sample into sfizz's file pool; the second, after a pause and all sound off, is kept.
    play()
    sfz_synth.all_sound_off()
    time.sleep(0.5)
    return play()
