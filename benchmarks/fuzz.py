"""Fuzz singsynth's inputs for as long as asked: the cases and properties of
tests/test_fuzz.py (singsynth.fuzzing), with more cases and a report.

    .venv/bin/python benchmarks/fuzz.py --minutes 10            # every target, time split evenly
    .venv/bin/python benchmarks/fuzz.py --minutes 5 --targets midi,preset --seed 7
    .venv/bin/python benchmarks/fuzz.py --replay checkpoint:28:64 --keep /tmp/case

Cases are numbered from 0 for each (seed, target), so a run of N minutes tries the cases
a shorter run tried and then more. Exit status 1 when any case failed a property.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from singsynth.fuzzing import TARGETS, run, run_case


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="total time, split evenly over the targets (default 5)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, of {', '.join(TARGETS)} (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-seconds", type=float, default=30.0,
                        help="a case running longer fails (default 30)")
    parser.add_argument("--memory-mb", type=int, default=1500,
                        help="a case taking more memory than this fails (default 1500)")
    parser.add_argument("--replay", metavar="TARGET:SEED:CASE",
                        help="run one case again (as a failure names it) and say what it gave")
    parser.add_argument("--keep", metavar="DIR", help="with --replay: copy the case's input here")
    return parser


def replay(spec: str, keep: str | None, case_seconds: float, memory_mb: int) -> int:
    name, seed, case = spec.split(":")
    target = TARGETS[name]()
    with tempfile.TemporaryDirectory(prefix="singsynth-fuzz-") as work:
        work = Path(work)
        (work / "seeds").mkdir()
        target.setup(work / "seeds")
        word, failure, seconds = run_case(target, int(seed), int(case), work,
                                          case_seconds=case_seconds, memory_mb=memory_mb)
        print(f"{spec}: {word} in {seconds:.2f} s" + (f": {failure.what}" if failure else ""))
        if keep:
            shutil.copytree(work / name, keep, symlinks=True, dirs_exist_ok=True)
            print(f"input kept in {keep}")
    return 1 if failure else 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.replay:
        return replay(args.replay, args.keep, args.case_seconds, args.memory_mb)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    each = args.minutes * 60 / len(names)
    print(f"fuzzing {', '.join(names)} for {each:.0f} s each, seed {args.seed}")
    started = time.perf_counter()
    last = [0.0]

    def progress(tally):
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            print(f"  {tally.line()}", flush=True)

    tallies = {}
    with tempfile.TemporaryDirectory(prefix="singsynth-fuzz-") as work:
        for name in names:
            tallies.update(run([name], args.seed, Path(work), seconds=each,
                               case_seconds=args.case_seconds, memory_mb=args.memory_mb,
                               progress=progress))
    total = sum(t.cases for t in tallies.values())
    failures = [f for t in tallies.values() for f in t.failures]
    print(f"\n{total} cases in {time.perf_counter() - started:.0f} s, {len(failures)} failures")
    for tally in tallies.values():
        print(tally.line())
    for failure in failures[:30]:
        print(f"FAILED {failure}")
    if failures:
        print("replay one with: benchmarks/fuzz.py --replay TARGET:SEED:CASE --keep DIR")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
