"""`singsynth eval CHECKPOINT --data DIR --out REPORT_DIR`: Table 1, pitch accuracy,
the nearest-pitch baseline and spectrograms, written as REPORT_DIR/report.md."""
import argparse

from singsynth.cli.types import positive_int


def _notes(text: str):
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of notes or 'all'")
    return value


def get_parser():
    p = argparse.ArgumentParser(prog="singsynth eval", description=__doc__)
    p.add_argument("checkpoint", help="checkpoint file (.safetensors) or model name in models/")
    p.add_argument("--data", help="dataset folder the checkpoint was trained on "
                                  "(default: the one its provenance records)")
    p.add_argument("--out", required=True, help="report folder to write (report.md, PNGs, WAVs)")
    p.add_argument("--notes", type=_notes, default=200,
                   help="at most this many notes scored per split, drawn with a fixed seed, "
                        "or 'all' (default 200: a few minutes on 2 CPU cores)")
    p.add_argument("--log", help="training log (RUN_DIR/log.jsonl) to draw as loss curves "
                                 "(default: the log.jsonl beside CHECKPOINT, if any)")
    p.add_argument("--seed", type=int, default=0, help="seed of the note sample (default 0)")
    p.add_argument("--batch", type=positive_int, default=16, help="notes generated at once (default 16)")
    p.add_argument("--examples", type=positive_int, default=4,
                   help="held-out notes drawn as spectrograms (default 4)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu or cuda (default auto: CUDA if available)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing report folder")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    from singsynth.eval import run

    path = run(args.checkpoint, args.out, data=args.data, notes=args.notes, log=args.log,
               force=args.force, seed=args.seed, batch=args.batch,
               examples=args.examples, device=args.device)
    print(f"wrote {path}")
    return 0
