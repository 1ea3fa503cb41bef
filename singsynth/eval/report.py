"""Write an evaluation as a folder: report.md, results.json, PNG figures, example WAVs.

The folder is assembled under a temporary name and renamed into place at the end, so an
interrupted evaluation never leaves a half-written report.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import soundfile as sf

from singsynth.errors import SingsynthError
from singsynth.eval import plots

QUALITY_PITCH_SHARE = 0.95     # issue 8: >= 95% of held-out notes within 50 cents
QUALITY_TEST_RATIO = 1.5       # issue 8: held-out spectral loss <= 1.5x the training loss
PAPER = "the paper, on NSynth: autoencoder 0.028 / 0.032, SING 0.039 / 0.051 (train / test)"
ROWS = [("autoencoder", "Autoencoder (encoder → decoder)"),
        ("sing", "SING (LSTM → decoder, `generate`)"),
        ("silence", "Silence (all zeros, floor reference)")]


def check_out(out, force: bool) -> Path:
    """The report folder, refusing to replace an existing one without `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SingsynthError(f"{out} exists and is not a folder; choose another --out")
    # -f replaces a report, never a folder of something else (it is deleted whole).
    if out.exists() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise SingsynthError(f"{out} exists and is not a singsynth report (no report.md); "
                             "choose another --out (-f replaces only reports)")
    if out.exists() and not force:
        raise SingsynthError(f"{out} already exists; pass -f to replace it or choose another --out")
    return out


def spec(x) -> str:
    return "–" if x is None or x != x else f"{x:.4f}"


def mse(x) -> str:
    return "–" if x is None or x != x else f"{x:.3e}"


def percent(share) -> str:
    return "–" if share != share else f"{100 * share:.1f}%"


def _clean(obj):
    """JSON-ready copy: NaN -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def markdown(results: dict, figures: dict) -> str:
    """The report text for `evaluate`'s results and the figure/WAV files written."""
    r, table = results, results["table"]
    tr, te = r["splits"]["train"], r["splits"]["test"]
    cap = "all notes" if r["notes_cap"] is None else f"at most {r['notes_cap']} per split"
    lines = [f"# Evaluation of `{r['checkpoint']}`", "",
             f"- Model: `{r['config']}` config, {len(r['instruments'])} instruments, "
             f"trained through stage **{r['stage']}**; {r['parameters']:,} generator parameters.",
             f"- Dataset: `{r['dataset']}`, pitch-completion split (every held-out pitch is "
             "one the model never heard for that instrument).",
             f"- Notes scored ({cap}, drawn with seed {r['seed']}): train {tr['scored']} of "
             f"{tr['total']}, held-out {te['scored']} of {te['total']}.",
             f"- Evaluated on {r['device']} in {r['seconds']:.0f} s.", ""]
    if r["stage"] != "e2e":
        lines += [f"> **Note:** this checkpoint stops after stage `{r['stage']}`"
                  + (": its LSTM is untrained, so the SING rows measure a random sequence "
                     "generator. Only the autoencoder rows are meaningful." if r["stage"] == "ae"
                     else ": the end-to-end stage has not run yet.") + "", ""]
    lines += ["## Table 1: spectral loss and waveform MSE", "",
              "Mean over notes of the spectral loss (L1 distance of log(1 + |STFT|²), 1,024-sample "
              "frames, hop 256) and of the waveform MSE; whole 4-second notes, outputs clamped "
              "to [-1, 1] as played.", "",
              "| Model | Train spectral | Held-out spectral | Train MSE | Held-out MSE |",
              "|---|---:|---:|---:|---:|"]
    for key, label in ROWS:
        if key in table:
            c = table[key]
            lines.append(f"| {label} | {spec(c['train']['spectral'])} | "
                         f"{spec(c['test']['spectral'])} | {mse(c['train']['mse'])} | "
                         f"{mse(c['test']['mse'])} |")
    b = r["baseline"]["test"]
    lines += [f"| Nearest-pitch sampler baseline | – | {spec(b['spectral'])} | – | "
              f"{mse(b['mse'])} |", ""]
    if "autoencoder" not in table:
        lines += ["The checkpoint has no encoder weights, so there is no autoencoder row.", ""]
    lines += [f"For scale, {PAPER}; absolute values depend on the dataset's loudness, "
              "so compare rows here with the silence row.", ""]

    p = r["pitch"]
    lines += ["## Pitch accuracy (held-out notes)", "",
              "Median fundamental by librosa's pyin over 0.2–2.5 s of each note (the held part), "
              "searched ±13 semitones around the requested pitch (high notes upsampled first, so "
              "that its shortest period spans 16 samples); a note with less than 10% "
              "voiced frames counts as \"no pitch\" and as out of tune.", "",
              "| Notes | Within 50 cents | Share | Within 50 cents, any octave | No pitch found "
              "| Median abs. error (cents) |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("sing", "SING"), ("ground_truth", "Ground truth (tracker sanity check)")):
        a = p[key]
        med = "–" if a["median_abs_cents"] != a["median_abs_cents"] else f"{a['median_abs_cents']:.1f}"
        lines.append(f"| {label} | {a['in_tune']} / {a['total']} | {percent(a['share'])} | "
                     f"{a['octave_in_tune']} / {a['total']} | {a['unpitched']} | {med} |")
    w = p["sing_where_truth_in_tune"]
    lines += ["", f"On the {w['total']} notes whose recording the tracker finds within 50 cents, "
              f"SING is within 50 cents on {w['in_tune']} ({percent(w['share'])}): this separates "
              "the model's errors from the tracker's (octave errors on sounds with a strong "
              "sub-octave such as organ stops, unpitched or very quiet notes).", ""]

    sing_test, base_test = table["sing"]["test"]["spectral"], b["spectral"]
    better = "SING" if sing_test < base_test else "the baseline"
    gap = abs(base_test - sing_test) / max(base_test, sing_test, 1e-12)
    lines += ["## Nearest-pitch sampler baseline", "",
              "What a sampler does with a missing key: the nearest training pitch of the same "
              "instrument and velocity, resampled (soxr) to the requested pitch, cut or padded "
              f"to 4 s. Mean shift {r['baseline']['mean_abs_semitones']:.2f} semitones; "
              f"{r['baseline']['other_velocity']} notes had to borrow another velocity. On a "
              "dataset rendered from a SoundFont this is close to how the recordings were made "
              "(a SoundFont stretches one sample over several keys), so it is a hard bar.", "",
              f"Held-out spectral loss: SING **{spec(sing_test)}**, baseline **{spec(base_test)}**: "
              f"**{better} is better** (its loss is {100 * gap:.1f}% lower).", ""]

    train_spec = table["sing"]["train"]["spectral"]
    ratio = sing_test / train_spec if train_spec > 0 else math.inf
    share = p["sing"]["share"]
    lines += ["## Quality bar (issue 8)", "", "| Criterion | Reached | Pass |", "|---|---:|:---:|",
              f"| ≥ 95% of held-out notes within 50 cents | {percent(share)} | "
              f"{'yes' if share >= QUALITY_PITCH_SHARE else 'no'} |",
              f"| the same, on notes whose recording tracks in tune (reference) | "
              f"{percent(p['sing_where_truth_in_tune']['share'])} | "
              f"{'yes' if p['sing_where_truth_in_tune']['share'] >= QUALITY_PITCH_SHARE else 'no'} |",
              f"| held-out spectral ≤ 1.5 × train | {ratio:.2f} × | "
              f"{'yes' if ratio <= QUALITY_TEST_RATIO else 'no'} |",
              f"| beats the nearest-pitch baseline (reported, not required) | "
              f"{spec(sing_test)} vs {spec(base_test)} | {'yes' if sing_test < base_test else 'no'} |",
              ""]

    lines += ["## Per instrument (held-out notes)", "",
              "| Instrument | Family | Notes | SING spectral | Baseline spectral | SING in tune "
              "| Truth in tune |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in r["per_instrument"]:
        lines.append(f"| {row['instrument']} | {row['family']} | {row['notes']} | "
                     f"{spec(row['sing_spectral'])} | {spec(row['baseline_spectral'])} | "
                     f"{row['sing_in_tune']} / {row['notes']} | {row['truth_in_tune']} / "
                     f"{row['notes']} |")
    lines += ["", "## Spectrograms of held-out notes", "",
              "Ground truth, autoencoder, SING and the baseline, one note per row (dB, 0 = the "
              "row's loudest bin).", "", f"![held-out notes]({figures['examples']})", ""]
    for k, wavs in enumerate(figures["wavs"], 1):
        links = ", ".join(f"[{name}]({path})" for name, path in wavs)
        lines.append(f"- Note {k}: {links}")
    s = r["showcase"]
    names = ", ".join(f"{n} ({f})" for n, f in zip(s["instruments"], s["families"]))
    lines += ["", f"## Same pitch, {len(s['instruments'])} instrument families", "",
              f"MIDI pitch {s['pitch']}, velocity {s['velocity']}: {names}. Top row SING, bottom "
              "row the recording (empty where the dataset has none).", "",
              f"![families]({figures['showcase']})", ""]
    if figures.get("loss"):
        lines += ["## Loss curves", "", f"From `{r['log']}`.", "", f"![loss]({figures['loss']})",
                  ""]
    return "\n".join(lines)


def write_report(out, results: dict, media: dict, log=None, force: bool = False) -> Path:
    """Write report.md, results.json, the figures and example WAVs into folder `out`.

    Returns:
        the path of report.md.
    """
    out = check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report is for sharing
    try:
        figures = {"examples": "examples.png", "showcase": "families.png", "wavs": []}
        cols = ("truth", "autoencoder", "sing", "baseline")
        titles = {"truth": "ground truth", "autoencoder": "autoencoder", "sing": "SING",
                  "baseline": "nearest-pitch baseline"}
        rows = [[(titles[c], e[c]) for c in cols] for e in media["examples"]]
        plots.spectrogram_grid(rows, tmp / figures["examples"],
                               row_labels=[e["label"] for e in media["examples"]])
        (tmp / "audio").mkdir()
        for k, e in enumerate(media["examples"], 1):
            wavs = []
            for c in cols:
                if e[c] is not None:
                    name = f"audio/note{k}-{c}.wav"
                    sf.write(tmp / name, e[c], 16000, subtype="PCM_16")
                    wavs.append((titles[c], name))
            figures["wavs"].append(wavs)
        s = media["showcase"]
        plots.spectrogram_grid([[(f"{n} ({f})", w) for n, f, w in
                                 zip(s["instruments"], s["families"], s["sing"])],
                                [(f"{n}: recording", w) for n, w in
                                 zip(s["instruments"], s["truth"])]],
                               tmp / figures["showcase"], row_labels=["SING", "ground truth"],
                               title=f"MIDI pitch {s['pitch']}, velocity {s['velocity']}")
        if log is not None:
            plots.plot_log(log, tmp / "loss.png")
            figures["loss"] = "loss.png"
            results["log"] = str(log)
        (tmp / "results.json").write_text(json.dumps(_clean(results), indent=1))
        (tmp / "report.md").write_text(markdown(results, figures))
        old = None
        if out.exists():
            # A fresh empty folder to rename the old report over, never a fixed ".old"
            old = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.", suffix=".old",
                                        dir=out.parent))
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.md"
