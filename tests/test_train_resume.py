"""`singsynth train --resume` after SIGKILL: no damaged files, and the very same weights.

A real training process saves its state after every batch (`save_minutes=0`, so many
moments are close to a save); it is killed with SIGKILL in the middle of the autoencoder
stage, resumed, killed again in the middle of the LSTM stage, and resumed to the end. Its checkpoints must equal those of an uninterrupted run bit for bit: every
random draw comes from (seed, epoch, batch) and the state holds model, optimizer and RNG.
"""
import json
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from singsynth.checkpoint import load_model, read_tensors
from singsynth.cli.train import main
from tests.train_fixtures import (REPO, TINY, assert_same_weights, cli_env, sets,  # noqa: F401
                                  train_dataset, weights)

RUN = ["ae.epochs=3", "lstm.epochs=2", "save_minutes=0"]
CHECKPOINTS = ("ae.safetensors", "lstm.safetensors", "e2e.safetensors", "model.safetensors")


def command(data, out, *extra):
    return [sys.executable, "-m", "singsynth", "train", "--config", TINY, "--data", str(data),
            "--out", str(out), *sets(*RUN), *extra]


def state(out, stage):
    """The saved (epoch, batch, done) of a stage, or None before its first save."""
    path = out / f"state-{stage}.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["state"])
    return meta["epoch"], meta["batch"], meta["done"]


def train_until_killed(args, out, stage, ready, log):
    """Start training, SIGKILL it once `ready(epoch, batch)` holds for `stage`'s state.

    The process runs in slices of a few milliseconds between SIGSTOP and SIGCONT, so a
    fast machine cannot finish the stage between two looks at its state; the kill lands
    wherever the process was (often inside a save).
    """
    proc = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            proc.send_signal(signal.SIGSTOP)
            s = state(out, stage)
            if s is not None and not s[2] and ready(s[0], s[1]):
                break
            assert proc.poll() is None, f"training ended before the kill point; see {log.name}"
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        else:
            pytest.fail(f"no {stage} state to kill at within 240 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return state(out, stage)


def assert_nothing_damaged(out):
    """Every checkpoint and state file loads; the only other files are log.jsonl and
    the temporary files of an atomic save (never named like a checkpoint)."""
    for path in out.iterdir():
        if path.name.endswith(".safetensors"):
            if path.name.startswith("state-"):
                tensors, metadata = read_tensors(path)
                assert json.loads(metadata["state"])["instruments"] and tensors
            else:
                assert load_model(path).instruments == ["piano_1_000", "violin_040"]
        elif path.name == "log.jsonl":
            for line in path.read_text().splitlines():
                assert {"stage", "epoch"} <= set(json.loads(line))
        else:
            assert path.name.endswith(".tmp"), path.name


@pytest.fixture(scope="module")
def reference(train_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(command(train_dataset, out)[4:]) == 0
    return out


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_sigkill_twice_then_resume_gives_the_uninterrupted_weights(reference, train_dataset,
                                                                   tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "train.log", "w") as log:
        # Mid second epoch of the autoencoder: optimizer moments and an epoch boundary.
        killed = train_until_killed(command(train_dataset, out), out, "ae",
                                    lambda epoch, batch: epoch >= 1 and batch >= 2, log)
        assert killed[0] < 3 and not killed[2]
        assert_nothing_damaged(out)
        assert not (out / "lstm.safetensors").exists()
        # Resumed, then killed again inside the LSTM stage (TBPTT windows, frozen encoder).
        killed = train_until_killed(command(train_dataset, out, "--resume"), out, "lstm",
                                    lambda epoch, batch: batch >= 1, log)
        assert not killed[2]
        assert_nothing_damaged(out)
        assert state(out, "ae") == (3, 0, True)
        # The last resume names its stages: the model is built fresh and the LSTM state
        # alone must restore it (targets from the trained encoder, not a random one).
        proc = subprocess.run(command(train_dataset, out, "--resume", "--stage", "lstm",
                                      "--stage", "e2e"),
                              cwd=REPO, env=cli_env(), stdout=log, stderr=log, timeout=300)
    assert proc.returncode == 0, (tmp_path / "train.log").read_text()[-2000:]
    for name in CHECKPOINTS:
        assert_same_weights(weights(out / name), weights(reference / name))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    # Losses of every epoch end are computed from the weights, so they match too; only
    # the running train loss of the two interrupted epochs covers fewer batches.
    log, ref = read_log(out), read_log(reference)
    assert [(r["stage"], r["epoch"]) for r in log] == [(r["stage"], r["epoch"]) for r in ref]
    for mine, theirs in zip(log, ref):
        assert (mine["test_spectral"], mine["test_mse"]) == (theirs["test_spectral"],
                                                              theirs["test_mse"])
    for name in CHECKPOINTS:
        mine = load_model(out / name).provenance["losses"]
        assert mine == {k: v for k, v in load_model(reference / name).provenance["losses"].items()
                        if k in mine}


def test_resume_of_a_finished_run_changes_nothing(reference, train_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for path in reference.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    assert main(command(train_dataset, out, "--resume")[4:]) == 0
    for name in CHECKPOINTS:
        assert_same_weights(weights(out / name), weights(reference / name))
    assert read_log(out) == read_log(reference)
