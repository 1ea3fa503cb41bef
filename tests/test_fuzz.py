"""Seeded fuzzing of everything a user hands singsynth (singsynth.fuzzing): mutated MIDI
files (read, and every other one that parses rendered), presets, training configs,
checkpoints and dataset folders. For every case: a result or one SingsynthError line,
never another exception; bounded time and memory; no write outside its own outputs;
renders finite and below full scale.

Bounded for `make test` (about 40 s on a loaded 2-core VM); `make fuzz` runs the same
cases for as long as asked. A failure prints `target:seed:case`, which
`benchmarks/fuzz.py --replay target:seed:case --keep DIR` reproduces and keeps.
"""
import pytest

from singsynth.fuzzing import TARGETS, run

SEED = 28
CASES = {"midi": 700, "preset": 250, "config": 150, "checkpoint": 300, "dataset": 300}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuzz_target_keeps_its_properties(tmp_path, name):
    tally = run([name], SEED, tmp_path, cases=CASES[name], case_seconds=30, memory_mb=1500)[name]
    assert tally.cases == CASES[name]
    assert not tally.failures, "\n".join(map(str, tally.failures[:10]))
    # The cases reach the code behind the first checks: not everything is refused.
    reached = tally.cases - tally.outcomes.get("refused", 0)
    assert reached >= tally.cases // 20, tally.line()


def test_the_midi_target_renders_some_of_what_it_parses(tmp_path):
    tally = run(["midi"], SEED, tmp_path, cases=40)["midi"]
    assert tally.outcomes.get("rendered", 0) >= 3, tally.line()


def test_a_case_that_crashes_hangs_or_writes_outside_is_reported(tmp_path, monkeypatch):
    """The runner's own properties can fail: a check raising another exception, running
    past its time, taking memory without bound or writing beside its folder."""
    import time

    from singsynth.fuzzing import targets

    def crash(self, case, outside):
        raise KeyError("boom")

    def hang(self, case, outside):
        while True:
            time.sleep(0.01)

    def hog(self, case, outside):
        return len(bytearray(3 << 30))

    def escape(self, case, outside):
        (outside / "victim.txt").write_text("overwritten")
        return "loaded"

    for check, words in ((crash, "KeyError"), (hang, "took too long"), (hog, "MemoryError"),
                         (escape, "wrote outside")):
        monkeypatch.setattr(targets.PresetTarget, "check", check)
        tally = run(["preset"], SEED, tmp_path, cases=1, case_seconds=1, memory_mb=300)["preset"]
        assert len(tally.failures) == 1 and words in str(tally.failures[0]), tally.failures


def test_every_target_is_fuzzed_here():
    assert set(CASES) == set(TARGETS)
