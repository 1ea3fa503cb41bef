"""`singsynth info CHECKPOINT` or `singsynth info --config NAME`: describe a model."""
import argparse
import json

from singsynth.cli.types import positive_int
from singsynth.errors import ConfigError
from singsynth.files import printable, shown

MIB = 2**20


def describe(model, source: str) -> str:
    cfg = model.config
    gen, enc = model.parameter_count("generator"), model.parameter_count("encoder")
    lines = [
        f"model: {shown(source)}",
        f"config: {printable(cfg.name)} (LSTM {cfg.lstm_layers}x{cfg.lstm_hidden}, latent {cfg.latent}, "
        f"channels {cfg.channels}, kernel {cfg.kernel}, window {cfg.window}, stride {cfg.stride}"
        + (f", {cfg.harmonics} harmonics of the pitch" if cfg.harmonics else "") + ")",
        f"generator (LSTM + decoder{' + harmonics' if cfg.harmonics else ''}): {gen:,} "
        f"parameters, {gen * 4 / MIB:.1f} MB float32",
        f"encoder (autoencoder stage): {enc:,} parameters, {enc * 4 / MIB:.1f} MB float32",
        f"output: {cfg.output_samples} samples at {cfg.output_rate} Hz "
        f"({cfg.output_samples / cfg.output_rate:.1f} s) from {cfg.steps} steps"
        + (f" (a {cfg.sample_rate} Hz core upsampled x{cfg.upsample}"
           + (f", plus {cfg.noise_bands} noise bands from {cfg.noise_low_hz} Hz" if cfg.noise_bands else "")
           + ")" if cfg.upsample > 1 or cfg.noise_bands else ""),
        f"velocities: {list(model.velocities)}",
        # Names come from the file: escaped, so they cannot drive the terminal.
        f"instruments ({len(model.instruments)}): " + ", ".join(
            f"{i}:{printable(name)}" for i, name in enumerate(model.instruments)),
    ]
    provenance = getattr(model, "provenance", None)
    if provenance:
        lines.append("provenance: " + json.dumps(provenance, sort_keys=True)[:2000])
    return "\n".join(lines)


def as_dict(model, source: str, path=None) -> dict:
    """What `describe` says, for `--json`: plain JSON types, sizes in parameters."""
    import dataclasses
    return {
        "model": source,
        "path": None if path is None else str(path),
        "config": dataclasses.asdict(model.config),
        "generator_parameters": model.parameter_count("generator"),
        "encoder_parameters": model.parameter_count("encoder"),
        "velocities": list(model.velocities),
        "instruments": list(model.instruments),
        "provenance": getattr(model, "provenance", None) or {},
    }


def get_parser():
    p = argparse.ArgumentParser(prog="singsynth info", description=__doc__)
    p.add_argument("checkpoint", nargs="?", help="checkpoint file or model name (default: default)")
    p.add_argument("--config", help="describe a named config (paper, small, tiny) instead")
    p.add_argument("--instruments", type=positive_int, default=1006,
                   help="vocabulary size assumed with --config (NSynth has 1006)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (config, parameter counts, instruments, "
                        "velocities, provenance) instead of text, for scripts")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.config:
        if args.checkpoint:
            raise ConfigError("give either a checkpoint or --config, not both")
        from singsynth.model.sing import build
        model = build(args.config, [f"instrument_{i}" for i in range(args.instruments)])
        source, path = (f"--config {args.config} with {args.instruments} instruments "
                        "(random weights)"), None
    else:
        from singsynth.model.checkpoint import load_model
        from singsynth.model.header import resolve
        model = load_model(args.checkpoint)
        path = resolve(args.checkpoint)
        source = str(path)
    if args.json:
        print(json.dumps(as_dict(model, source, path)))
    else:
        print(describe(model, source))
    return 0
