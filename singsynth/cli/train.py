"""`singsynth train --config configs/small.yaml --data DIR --out models/NAME`."""
import argparse
from pathlib import Path

from singsynth.train.config import STAGES, load_config


def get_parser():
    p = argparse.ArgumentParser(prog="singsynth train", description=__doc__)
    p.add_argument("--config", help="YAML config (configs/*.yaml); default: built-in defaults")
    p.add_argument("--data", help="dataset folder in NSynth's layout")
    p.add_argument("--out", help="output folder for checkpoints and the log")
    p.add_argument("--stage", choices=STAGES + ("highband",), action="append",
                   help="run only this stage (repeatable); default: all three in order. "
                        "highband: with --init, train a 16 kHz checkpoint's full-band noise "
                        "band on a 48 kHz dataset (train/highband.py); its settings: "
                        "--set highband.epochs=40, highband.lr=0.005, highband.every=4, "
                        "highband.kit_repeat=4")
    p.add_argument("--resume", action="store_true", help="continue a killed run exactly")
    p.add_argument("-f", "--force", action="store_true", help="start over in an existing --out")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start from a trained checkpoint's weights (the config key init)")
    p.add_argument("--extend", action="store_true",
                   help="with --init: add the dataset's new instruments to that checkpoint and "
                        "train only their embeddings (its instruments stay bit for bit); "
                        "runs --stage e2e unless told otherwise")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set ae.lr=0.001 (repeatable)")
    p.add_argument("--plot", metavar="RUN_DIR",
                   help="draw RUN_DIR/log.jsonl as loss curves (RUN_DIR/loss.png) and exit")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.plot:
        from singsynth.eval.plots import plot_log
        png = plot_log(Path(args.plot) / "log.jsonl", Path(args.plot) / "loss.png")
        print(f"wrote {png}")
        return 0
    if not args.data or not args.out:
        get_parser().error("--data and --out are required (or --plot RUN_DIR)")
    if "highband" in (args.stage or ()):
        return run_highband(args)
    cfg = load_config(args.config, args.set)
    if args.init:
        cfg.init = args.init        # set, not parsed as YAML: a path is any string
    cfg.extend = cfg.extend or args.extend
    default = ("e2e",) if cfg.extend else STAGES
    stages = tuple(s for s in STAGES if s in (args.stage or default))
    from singsynth.train import run
    run(cfg, args.data, args.out, stages, resume=args.resume, device=args.device,
        force=args.force, config_path=args.config)
    return 0


def run_highband(args) -> int:
    """`--stage highband`: the full-band noise band of `--init`, on a 48 kHz `--data`."""
    from singsynth.errors import ConfigError
    from singsynth.train import highband
    if args.stage != ["highband"] or not args.init or args.config or args.extend:
        raise ConfigError("--stage highband runs alone, with --init CHECKPOINT (the trained "
                          "16 kHz model) and no --config or --extend")
    settings = {"epochs": int, "lr": float, "every": int, "kit_repeat": int}
    options = {}
    for item in args.set:
        key, _, value = item.partition("=")
        name = key.removeprefix("highband.")
        if not key.startswith("highband.") or name not in settings:
            raise ConfigError(f"--set {item}: --stage highband takes "
                              + ", ".join(f"highband.{k}" for k in settings))
        try:
            options[name] = settings[name](value)
        except ValueError:
            raise ConfigError(f"--set {item}: {name} must be a number") from None
        if not options[name] > 0 or options[name] != options[name]:
            raise ConfigError(f"--set {item}: {name} must be positive")
    highband.run(args.init, args.data, args.out, resume=args.resume, force=args.force,
                 **options)
    return 0
