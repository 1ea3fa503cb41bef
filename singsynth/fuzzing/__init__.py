"""Seeded fuzzing of what a user hands singsynth: MIDI files (read and rendered), presets,
training configs, checkpoints and dataset folders.

`run` makes mutated inputs case by case (`targets`), runs the code a command would run on
each, and checks the properties that must hold for every input:

- a result, or one SingsynthError line; never another exception;
- at most `case_seconds` per case (a timer interrupts it) and at most `memory_mb` more
  memory than the process had at the start (RLIMIT_DATA: past it, MemoryError);
- no write outside the case's own output files: a victim file in a folder beside the
  case, the current folder and the case's inputs are compared before and after;
- for renders, every sample finite and below full scale.

Case i of a target is a pure function of (seed, target, i), so a failure is reproduced
with `benchmarks/fuzz.py --replay target:seed:i`. tests/test_fuzz.py runs a few hundred
cases per target in `make test`; benchmarks/fuzz.py runs them for as long as asked.
"""
from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from singsynth.errors import SingsynthError
from singsynth.fuzzing.targets import TARGETS, PropertyFailed, Target, one_line

VICTIM = b"a file outside every case: no case may change it\n"


class CaseTimeout(Exception):
    """Raised by the timer inside a case that ran past its time."""


@dataclass
class Failure:
    target: str
    case: int
    seed: int
    what: str

    def __str__(self) -> str:
        return f"{self.target}:{self.seed}:{self.case}: {self.what}"


@dataclass
class Tally:
    """What one target's cases gave: counts by outcome, failures, time."""

    target: str
    cases: int = 0
    outcomes: dict = field(default_factory=dict)  # "refused" or the check's word -> count
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    slowest: float = 0.0
    peak_mb: float = 0.0  # growth of the process's peak memory over the run

    def line(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return (f"{self.target:10s} {self.cases:6d} cases  {len(self.failures):3d} failures  "
                f"{self.seconds:6.1f} s (slowest {self.slowest:.2f} s, peak memory "
                f"+{self.peak_mb:.0f} MB)  {counts}")


def case_rng(seed: int, target: str, case: int) -> random.Random:
    return random.Random(f"{seed}:{target}:{case}")


def _data_bytes() -> int:
    """The process's data segment now (VmData: what RLIMIT_DATA counts), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def bounded(seconds: float, memory_mb: int):
    """Run the body with a timer (CaseTimeout past `seconds`; main thread only) and a
    soft RLIMIT_DATA of the current data segment plus `memory_mb` (MemoryError past it)."""
    old_limit = resource.getrlimit(resource.RLIMIT_DATA)
    hard = old_limit[1]
    soft = _data_bytes() + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    timer = threading.current_thread() is threading.main_thread()
    if timer:
        def expire(signum, frame):
            raise CaseTimeout(f"ran past {seconds:g} s")
        old_handler = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_DATA, old_limit)


def _snapshot(folder: Path) -> dict:
    """relative path -> (kind, size, mtime_ns) of everything under `folder` (links not followed)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            st = os.lstat(path)
            out[str(path.relative_to(folder))] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns)
    return out


def run_case(target: Target, seed: int, case: int, work: Path, *, case_seconds: float = 20.0,
             memory_mb: int = 1500) -> tuple:
    """Make and check one case -> (outcome word, Failure or None, seconds)."""
    folder, outside, cwd = work / target.name, work / "outside", work / "cwd"
    for path in (folder, cwd):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    outside.mkdir(exist_ok=True)
    victim = outside / "victim.txt"
    victim.write_bytes(VICTIM)

    def fail(what):
        return "FAILED", Failure(target.name, case, seed, what.replace("\n", " | ")[:400])

    try:
        target.make(case_rng(seed, target.name, case), folder, outside)
    except Exception as exc:  # a bug of the fuzzer's own: said, and the run goes on
        return (*fail(f"making the case failed: {type(exc).__name__}: {exc}"), 0.0)
    before, around = _snapshot(folder), _snapshot(outside)

    start = time.perf_counter()
    failure = None
    home = os.getcwd()
    try:
        os.chdir(cwd)                      # an empty folder: a relative write lands here
        with bounded(case_seconds, memory_mb):
            word = target.check(folder, outside)
    except SingsynthError as exc:
        word = "refused"
        try:
            one_line(str(exc), "the error")
        except PropertyFailed as bad:
            word, failure = fail(str(bad))
    except PropertyFailed as exc:
        word, failure = fail(str(exc))
    except CaseTimeout as exc:
        word, failure = fail(f"took too long: {exc}")
    except MemoryError:
        word, failure = fail(f"MemoryError: needed more than {memory_mb} MB")
    except Exception as exc:  # the property: nothing but a SingsynthError may escape
        where = traceback.extract_tb(exc.__traceback__)[-1]
        word, failure = fail(f"{type(exc).__name__}: {str(exc)[:200]} "
                             f"(at {Path(where.filename).name}:{where.lineno})")
    finally:
        os.chdir(home)
    seconds = time.perf_counter() - start
    # Writes: only the target's own outputs in its folder; nothing beside it.
    if failure is None:
        after = _snapshot(folder)
        changed = sorted(k for k in set(before) | set(after)
                         if before.get(k) != after.get(k) and k not in target.writes)
        if victim.read_bytes() != VICTIM or _snapshot(outside) != around:
            word, failure = fail("wrote outside its folder (the victim file beside it changed)")
        elif changed:
            word, failure = fail(f"changed its inputs or wrote elsewhere: {changed[:5]}")
        elif os.listdir(cwd):
            word, failure = fail(f"wrote into the current folder: {sorted(os.listdir(cwd))[:5]}")
    return word, failure, seconds


def run(names, seed: int, work: Path, *, cases: int | None = None, seconds: float | None = None,
        case_seconds: float = 20.0, memory_mb: int = 1500, progress=None) -> dict:
    """Fuzz each target in `names` for `cases` cases or `seconds` seconds (each).

    Args:
        names: target names (keys of `TARGETS`). work: an empty scratch folder.
        progress: called with each Tally after every case, if given.
    Returns:
        target name -> Tally.
    """
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tallies = {}
    for name in names:
        target = TARGETS[name]()
        setup = work / f"{name}-seeds"
        setup.mkdir(parents=True, exist_ok=True)
        target.setup(setup)
        tally = tallies[name] = Tally(name)
        started = time.perf_counter()
        case = 0
        while (cases is None or case < cases) and (
                seconds is None or time.perf_counter() - started < seconds):
            word, failure, took = run_case(target, seed, case, work, case_seconds=case_seconds,
                                           memory_mb=memory_mb)
            tally.cases += 1
            tally.outcomes[word] = tally.outcomes.get(word, 0) + 1
            tally.slowest = max(tally.slowest, took)
            if failure is not None:
                tally.failures.append(failure)
            case += 1
            tally.seconds = time.perf_counter() - started
            if progress:
                progress(tally)
        tally.peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
        shutil.rmtree(work / name, ignore_errors=True)
    return tallies
