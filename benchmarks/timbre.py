"""How close singsynth's notes sound to the SoundFont it learned from, full band and below
7.5 kHz, beside a real small GM SoundFont (TimGM6mb) rendered the same way.

For every program the model covers (its instruments' `_NNN` program suffix), notes at a
few pitches and velocities come from:
- FluidSynth + FluidR3_GM (the source; reverb and chorus off), at 48 kHz;
- FluidSynth + TimGM6mb (the peer, dry), at 48 kHz;
- each model given (`--model`, repeatable: old and new side by side), resampled to 48 kHz
  with soxr when it plays another rate.
Each note is RMS-normalised (loudness does not count) and compared with FluidR3's on a
log-mel spectrogram (128 mels, 2,048-point STFT, hop 512): the mean absolute difference
of log10 mel power (floor 1e-6), on the full band (0-16 kHz, `--fmax`) and below 7.5 kHz.
Also the energy between 9 and 16 kHz (its share of each normalised note, summed over
the notes) as a multiple of FluidR3's, per program and over all, and the count of
programs where the model is closer than TimGM6mb. `--figure` draws spectrograms to 24 kHz
side by side; `--wavs DIR` writes the notes compared, for listening.

    python benchmarks/timbre.py --model models/default-16k.safetensors \\
        --model models/default.safetensors --figure models/default-spectrograms.png
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from singsynth.notes import is_unpitched  # noqa: E402 (after the path)

FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
RATE = 48000
VELOCITIES = (25, 50, 75, 100, 127)
SHOW_KEYS = (38, 42, 49)   # snare, closed hi-hat, crash


def render_soundfont(path, program: int, notes, drums: bool = False):
    """FluidSynth's 4-second notes [(pitch, velocity)] of bank-0 `program` (drums: the
    standard kit, bank 128 preset 0, the pitch being the drum key), (n, 192000) at 48 kHz,
    dry, cut as the dataset builder cuts them (None rows: no sound)."""
    from singsynth.data import soundfont as sfr
    if drums:
        inst = [i for i in sfr.plan_instruments(path, [0], drums=True) if i.drums][0]
    else:
        inst = sfr.plan_instruments(path, [program])[0]
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "notes.mid"
        onsets = sfr.write_midi(midi, inst, notes)
        audio, _, found = sfr.cut_notes(sfr.stream_fluidsynth(path, midi, RATE), RATE,
                                        onsets, RATE)
    return [a if ok else None for a, ok in zip(audio, found)]


def render_model(model, instrument: int, notes, core: bool = False):
    """The model's notes at 48 kHz, (n, 192000); `core`: its 16 kHz core's alone."""
    import soxr
    import torch
    velocity = torch.tensor([float(VELOCITIES.index(v)) for _, v in notes])
    wave = model.generate(torch.full((len(notes),), instrument), torch.tensor([p for p, _ in notes]),
                          velocity, core=core).numpy()
    rate = model.config.sample_rate if core else model.config.output_rate
    if rate != RATE:
        wave = np.stack([soxr.resample(w, rate, RATE, quality="VHQ") for w in wave])
    return list(wave[:, :4 * RATE])


def log_mel(wave, fmax):
    import librosa
    wave = wave / max(float(np.sqrt(np.mean(wave ** 2))), 1e-9) * 0.1
    mel = librosa.feature.melspectrogram(y=wave, sr=RATE, n_fft=2048, hop_length=512,
                                         n_mels=128, fmin=0, fmax=fmax)
    return np.log10(mel + 1e-6)


def distance(a, b, fmax) -> float:
    """Mean |log10 mel power| difference of two RMS-normalised notes."""
    return float(np.mean(np.abs(log_mel(a, fmax) - log_mel(b, fmax))))


def band_energy(wave, low=9000, high=16000) -> float:
    """Energy between `low` and `high` Hz of the RMS-normalised note."""
    wave = wave / max(float(np.sqrt(np.mean(wave ** 2))), 1e-9)
    spec = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / RATE)
    return float(spec[(freqs >= low) & (freqs < high)].sum() / spec.sum())


def program_of(name: str) -> int | None:
    """The GM program of a melodic instrument name (`violin_040` -> 40); None for a kit."""
    tail = name.rsplit("_", 1)[-1]
    if is_unpitched(name):
        return None
    return int(tail) if tail.isdigit() and len(tail) == 3 else None


def confusion(features, labels, programs):
    """Which FluidR3 program each source's notes are nearest to.

    features: {label: {program: [log-mel or None per note]}}, "fluidr3" among them.
    Returns {label: (plays itself count, {program: nearest other program})}: a program
    "plays itself" when its notes' mean log-mel distance is smallest to its own FluidR3
    program's notes (same pitches and velocities) among all programs compared.
    """
    ref = features["fluidr3"]
    out = {}
    for label in labels:
        mine, wrong = 0, {}
        for p in programs:
            dist = {}
            for q in programs:
                pairs = [(a, b) for a, b in zip(features[label][p], ref[q])
                         if a is not None and b is not None]
                if pairs:
                    dist[q] = float(np.mean([np.mean(np.abs(a - b)) for a, b in pairs]))
            if not dist:
                continue
            nearest = min(dist, key=dist.get)
            if nearest == p:
                mine += 1
            else:
                wrong[p] = nearest
        out[label] = (mine, wrong)
    return out


def drum_keys(models, keys, velocity, fmax):
    """The standard kit, key by key: each model's `drums_*` instrument and TimGM6mb's kit
    against FluidR3's; returns {label: [distance per key]} and {label: [the same below
    7.5 kHz]} (None: a key silent in FluidR3), and {label: [wave per key]} with FluidR3's."""
    notes = [(k, velocity) for k in keys]
    source = render_soundfont(FLUIDR3, 0, notes, drums=True)
    peer = render_soundfont(TIMGM, 0, notes, drums=True)
    waves = {"timgm6mb": peer}
    for name, m in models.items():
        kit = next((i for i, n in enumerate(m.instruments) if is_unpitched(n)), None)
        if kit is not None:
            waves[name] = render_model(m, kit, notes)
    def table(top):
        return {label: [distance(w, ref, top) if ref is not None and w is not None else None
                        for w, ref in zip(ws, source)] for label, ws in waves.items()}
    return table(fmax), table(7500), {"fluidr3": source, **waves}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="checkpoint(s) to compare")
    parser.add_argument("--pitches", default="48,60,72")
    parser.add_argument("--programs", help="only these GM programs, e.g. 0,40,73 (default: all "
                                           "the model has)")
    parser.add_argument("--velocities", default="100")
    parser.add_argument("--fmax", type=int, default=16000, help="full band's top, Hz")
    parser.add_argument("--figure", help="PNG of spectrograms side by side")
    parser.add_argument("--wavs", help="folder for the compared notes (FLAC)")
    parser.add_argument("--json", help="write the per-program table here")
    parser.add_argument("--pitch-data", metavar="DIR",
                        help="also: pitch of every held-out note of dataset DIR (its test "
                             "split), within 50 cents, per model")
    parser.add_argument("--confusion", action="store_true",
                        help="also which FluidR3 program each program's notes are nearest to "
                             "(does each program play itself?), for TimGM6mb and each model")
    parser.add_argument("--show", default="0,40,73",
                        help="programs drawn by --figure and written by --wavs (MIDI 60)")
    parser.add_argument("--drums", action="store_true",
                        help="also the standard kit, keys 35-81, against TimGM6mb's kit")
    parser.add_argument("--core", action="store_true",
                        help="also each full-band model's 16 kHz core alone (the model before "
                             "its noise band was trained: the old default, for the default)")
    args = parser.parse_args(argv)
    from singsynth.model.checkpoint import load_model
    paths = args.model or [str(ROOT / "models" / "default.safetensors")]
    models = {Path(p).stem: load_model(p) for p in paths}
    first = next(iter(models.values()))
    cores = {f"{name}-16k-core": m for name, m in models.items()
             if args.core and m.config.output_rate != m.config.sample_rate}
    programs = [(i, program_of(n)) for i, n in enumerate(first.instruments)
                if program_of(n) is not None]
    if args.programs:
        wanted = {int(p) for p in args.programs.split(",")}
        programs = [(i, p) for i, p in programs if p in wanted]
    notes = [(p, v) for p in map(int, args.pitches.split(","))
             for v in map(int, args.velocities.split(","))]
    rows, examples, shown = [], {}, []
    features = {}  # label -> program -> [log-mel per note], for --confusion
    start = time.time()
    for index, program in programs:
        source = render_soundfont(FLUIDR3, program, notes)
        peer = render_soundfont(TIMGM, program, notes)
        name_of = first.instruments[index]
        outputs = {name: render_model(m, m.instruments.index(name_of), notes, core=True)
                   for name, m in cores.items()}
        outputs.update({name: render_model(m, m.instruments.index(name_of), notes)
                        for name, m in models.items()})
        row = {"program": program, "instrument": first.instruments[index]}
        for label, waves in [("timgm6mb", peer)] + list(outputs.items()):
            full, low, high, ref_high = [], [], [], []
            for ref, w in zip(source, waves):
                if ref is None or w is None:
                    continue
                full.append(distance(w, ref, args.fmax))
                low.append(distance(w, ref, 7500))
                high.append(band_energy(w))
                ref_high.append(band_energy(ref))
            row[label] = {"full": float(np.mean(full)), "low": float(np.mean(low)),
                          "high": float(np.sum(high)), "ref_high": float(np.sum(ref_high)),
                          "share_9_16k": float(np.sum(high) / max(np.sum(ref_high), 1e-30))}
        rows.append(row)
        examples[program] = {"fluidr3": source, "timgm6mb": peer, **outputs}
        if args.confusion:
            for label, waves in examples[program].items():
                features.setdefault(label, {})[program] = [
                    None if w is None else log_mel(w, args.fmax) for w in waves]
        print(f"{program:3d} {row['instrument']:<26} " + "  ".join(
            f"{k}: {row[k]['full']:.2f}/{row[k]['low']:.2f}/{row[k]['share_9_16k']:.2f}"
            for k in ["timgm6mb", *outputs]), flush=True)
    print(f"\n{len(rows)} programs, notes {notes}, {time.time() - start:.0f} s; "
          "distance to FluidR3 full band (0-%d Hz) / below 7.5 kHz / 9-16 kHz energy share" % args.fmax)
    summary = {}
    for label in ["timgm6mb", *cores, *models]:
        full = [r[label]["full"] for r in rows]
        low = [r[label]["low"] for r in rows]
        share = sum(r[label]["high"] for r in rows) / sum(r[label]["ref_high"] for r in rows)
        s = {"median_full": float(np.median(full)), "median_low": float(np.median(low)),
             "share_9_16k": float(share)}
        if label != "timgm6mb":
            s["closer_full"] = sum(r[label]["full"] < r["timgm6mb"]["full"] for r in rows)
            s["closer_low"] = sum(r[label]["low"] < r["timgm6mb"]["low"] for r in rows)
        summary[label] = s
        print(f"{label:<24} median full {s['median_full']:.3f}  below 7.5 kHz {s['median_low']:.3f}"
              f"  9-16 kHz energy {s['share_9_16k']:.2f} x FluidR3's"
              + (f"  closer than TimGM6mb: {s['closer_full']}/{len(rows)} full, "
                 f"{s['closer_low']}/{len(rows)} low" if "closer_full" in s else ""))
    if args.confusion:
        table = confusion(features, ["timgm6mb", *cores, *models], [p for _, p in programs])
        summary["confusion"] = {label: {"plays_itself": mine, "nearest_other": wrong}
                                for label, (mine, wrong) in table.items()}
        for label, (mine, wrong) in table.items():
            print(f"{label:<24} plays its own FluidR3 program: {mine}/{len(rows)} "
                  f"({100 * mine / max(len(rows), 1):.0f} %); nearest another: "
                  + (", ".join(f"{p}->{q}" for p, q in sorted(wrong.items())) or "none"))
    if args.drums:
        keys = list(range(35, 82))
        per_key, per_key_low, kit_waves = drum_keys(
            models, keys, int(args.velocities.split(",")[0]), args.fmax)
        for key in SHOW_KEYS:   # snare, closed hi-hat, crash: drawn and written with --figure/--wavs
            shown.append((f"kit{key:03d}", f"kit key {key}",
                          {col: waves[keys.index(key)] for col, waves in kit_waves.items()}))
        summary["drums"] = {"keys": keys, **per_key,
                            **{f"{k}_below_7k5": v for k, v in per_key_low.items()}}
        for band, table in (("full band", per_key), ("below 7.5 kHz", per_key_low)):
            peer = table["timgm6mb"]
            for label, dists in table.items():
                pairs = [(d, t) for d, t in zip(dists, peer) if d is not None and t is not None]
                line = (f"{label:<24} kit keys 35-81, {band}: "
                        f"median {np.median([d for d, _ in pairs]):.3f}")
                if label != "timgm6mb":
                    closer = sum(d < t for d, t in pairs)
                    key = "closer" if band == "full band" else "closer_below_7k5"
                    summary["drums"][f"{label}_{key}"] = closer
                    line += f", closer than TimGM6mb's kit on {closer}/{len(pairs)} keys"
                print(line)
    if args.pitch_data:
        for label, model in models.items():   # a core's pitch is `singsynth eval`'s
            summary[label]["pitch"] = held_out_pitch(model, args.pitch_data)
            p = summary[label]["pitch"]
            print(f"{label:<24} held-out pitch: {p['in_tune']} of {p['notes']} within 50 cents "
                  f"({100 * p['in_tune'] / p['notes']:.1f} %), {p['no_pitch']} with none found")
    pick = next((i for i, (p, _) in enumerate(notes) if p == 60), 0)
    shown[:0] = [(f"program{p:03d}", f"program {p}, MIDI {notes[pick][0]}",
                  {col: waves[pick] for col, waves in examples[p].items()})
                 for p in map(int, args.show.split(",")) if p in examples]
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "programs": rows}, indent=1))
    if args.figure:
        figure(shown, args.figure, [*cores, *models])
    if args.wavs:
        write_wavs(shown, Path(args.wavs))


def held_out_pitch(model, data, core=False) -> dict:
    """Pitch of the model's version of every held-out note of `data` (pyin, within 50
    cents). Notes are tracked at 16 kHz, downsampled with soxr when the model plays 48 kHz:
    pyin's 2,048-sample frame must hold two periods of MIDI 21 (27.5 Hz), which at 48 kHz
    it cannot; the band above 8 kHz carries no fundamental."""
    import math

    import soxr
    import torch

    from singsynth.data import NSynthDataset
    from singsynth.data.pitch import cents, track_pitch
    test = NSynthDataset(data, split="test")
    index = torch.tensor([model.instruments.index(test.instruments[int(i)]) for i in test.instrument])
    rate = model.config.sample_rate if core else model.config.output_rate
    in_tune = none = 0
    for start in range(0, len(index), 16):
        sl = slice(start, start + 16)
        waves = model.generate(index[sl], test.pitch[sl], test.velocity[sl].float(), core=core)
        for wave, pitch in zip(waves.numpy(), test.pitch[sl].tolist()):
            if rate != 16000:
                wave = soxr.resample(wave, rate, 16000, quality="VHQ")
            c = cents(track_pitch(wave, pitch, 16000), pitch)
            none += math.isnan(c)
            in_tune += abs(c) <= 50
    return {"notes": len(index), "in_tune": int(in_tune), "no_pitch": int(none)}


def figure(shown, path, model_names):
    """Spectrograms to 24 kHz: one row per shown note [(tag, title, {column: wave})], one
    column per source (FluidR3, TimGM6mb, each model)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = ["fluidr3", "timgm6mb", *model_names]
    fig, axes = plt.subplots(len(shown), len(cols), figsize=(3.2 * len(cols), 2.6 * len(shown)),
                             squeeze=False)
    for r, (_, title, waves) in enumerate(shown):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            wave = waves.get(col)
            if wave is None:
                ax.axis("off")
                continue
            # Exact digital silence (a SoundFont's ended sample, the gate) would be log(0),
            # drawn blank: a -180 dB noise floor draws it black like any silence.
            floor = 1e-9 * np.random.default_rng(0).standard_normal(3 * RATE)
            ax.specgram(wave[:3 * RATE] + floor[:len(wave[:3 * RATE])], NFFT=2048, Fs=RATE,
                        noverlap=1536, cmap="magma", vmin=-140, vmax=-20)
            ax.set_ylim(0, 24000)
            ax.set_title(f"{col}: {title}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def write_wavs(shown, folder: Path):
    """The shown notes as FLAC, TAG-SOURCE.flac."""
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    for tag, _, waves in shown:
        for col, wave in waves.items():
            if wave is not None:
                sf.write(folder / f"{tag}-{col}.flac", wave, RATE)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
