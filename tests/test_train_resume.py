"""`singsynth train --resume` after SIGKILL: no damaged files, and the very same weights.

A real training process saves its state after every batch (`save_minutes=0`, so many
moments are close to a save); it is killed with SIGKILL in the middle of the autoencoder
stage, resumed, killed again in the middle of the LSTM stage, and resumed to the end. Its checkpoints must equal those of an uninterrupted run bit for bit: every
random draw comes from (seed, epoch, batch) and the state holds model, optimizer and RNG.
Its log must equal the uninterrupted run's too, train loss of the interrupted epochs
included. A state file that cannot be resumed from is one error line, before anything loads.
"""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from singsynth.cli.train import main
from singsynth.errors import CheckpointError, ConfigError
from singsynth.model.checkpoint import load_model, read_tensors
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
    # Losses of every epoch end are computed from the weights, so they match too; so does
    # the train loss of the two interrupted epochs: the state carries the epoch's running
    # sum, so the record covers the batches before the kill as well as those after.
    log, ref = read_log(out), read_log(reference)
    assert [(r["stage"], r["epoch"]) for r in log] == [(r["stage"], r["epoch"]) for r in ref]
    for mine, theirs in zip(log, ref):
        assert (mine["test_spectral"], mine["test_mse"]) == (theirs["test_spectral"],
                                                              theirs["test_mse"])
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-12, abs=0), \
            (mine, theirs)
        assert mine["lr"] == theirs["lr"]
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


# A valid state from the middle of the autoencoder's third epoch (8 batches an epoch):
# the bad states below each spoil one thing of it.
MID_EPOCH = {"epoch": 2, "batch": 3, "done": False, "seen": 3, "loss_sum": 0.25,
             "seconds": 0.5}


def spoil_meta(**changes):
    def spoil(tensors, meta):
        return tensors, {"state": json.dumps({**meta, **changes})}
    return spoil


def spoil_tensors(change):
    def spoil(tensors, meta):
        tensors = dict(tensors)
        change(tensors)
        return tensors, {"state": json.dumps(meta)}
    return spoil


def without(meta_key):
    def spoil(tensors, meta):
        return tensors, {"state": json.dumps({k: v for k, v in meta.items() if k != meta_key})}
    return spoil


def drop_optimiser(tensors):
    for name in [n for n in tensors if n.startswith("optim.")]:
        del tensors[name]


def first(tensors, prefix):
    return next(n for n in sorted(tensors) if n.startswith(prefix))


@pytest.mark.parametrize("spoil, pattern", [
    (lambda t, m: (t, {"state": "{not json"}), r"metadata 'state' is not valid JSON"),
    (lambda t, m: (t, {"state": "[1, 2]"}), r"metadata 'state' must be a JSON object"),
    (spoil_meta(epoch="zero"), r"metadata 'epoch' must be a whole number 0 or more, not 'zero'"),
    (spoil_meta(epoch=-1), r"metadata 'epoch' must be a whole number 0 or more, not -1"),
    (spoil_meta(batch=10**9), r"stopped at batch 1000000000 of an epoch of 8 batches"),
    (spoil_meta(batch=True), r"metadata 'batch' must be a whole number 0 or more, not True"),
    (spoil_meta(done="no"), r"metadata 'done' must be true or false"),
    (spoil_meta(stage="lstm"), r"holds the state of stage 'lstm', not 'ae'"),
    (spoil_meta(instruments="piano"), r"metadata 'instruments' must be a list of names"),
    (spoil_meta(result=[]), r"metadata 'result' must be a JSON object"),
    (spoil_meta(param_groups="x"), r"metadata 'param_groups' must be a list"),
    (spoil_meta(param_groups=[{"params": [0, 1], "lr": 1e-3}]),
     r"optimiser groups .* do not match"),
    (spoil_meta(seen=4), r"metadata 'seen' must be a whole number 0 to the batch 3"),
    (spoil_meta(loss_sum="x"), r"metadata 'loss_sum' must be a finite number"),
    (without("seconds"), r"metadata has no 'seconds'"),
    (without("epoch"), r"metadata has no 'epoch'"),
    (spoil_tensors(lambda t: t.pop("rng.torch")), r"tensor rng\.torch is missing"),
    (spoil_tensors(lambda t: t.update({"rng.torch": torch.zeros(3)})),
     r"tensor rng\.torch has shape \[3\] and dtype float32, expected \[\d+\] and uint8"),
    (spoil_tensors(drop_optimiser), r"tensor optim\.0\.exp_avg is missing"),
    (spoil_tensors(lambda t: t.pop("optim.3.exp_avg_sq")),
     r"tensor optim\.3\.exp_avg_sq is missing"),
    (spoil_tensors(lambda t: t.update({first(t, "optim."): torch.zeros(7)})),
     r"tensor optim\.0\.exp_avg has shape \[7\] and dtype float32, expected \[\d+, "),
    (spoil_tensors(lambda t: t.update({"optim.0.exp_avg_sq": -t["optim.0.exp_avg_sq"] - 1})),
     r"tensor optim\.0\.exp_avg_sq holds negative values"),
    (spoil_tensors(lambda t: t.update({"optim.0.step": torch.tensor(-2.0)})),
     r"tensor optim\.0\.step must hold a whole number of steps"),
    (spoil_tensors(lambda t: t.update({"optim.99.exp_avg": torch.zeros(1)})),
     r"unexpected tensor optim\.99\.exp_avg"),
    (spoil_tensors(lambda t: t.update({first(t, "model."): t[first(t, "model.")].double()})),
     r"tensor model\.\S+ has shape \[.*\] and dtype float64, expected .* and float32"),
])
def test_bad_state_file_is_one_checkpoint_error(reference, train_dataset, tmp_path, spoil,
                                                pattern):
    """Every spoilt state is refused before anything is loaded or trained: one line naming
    the file, the problem and the fix."""
    out = tmp_path / "run"
    out.mkdir()
    tensors, metadata = read_tensors(reference / "state-ae.safetensors")
    tensors, metadata = spoil(tensors, {**json.loads(metadata["state"]), **MID_EPOCH})
    path = out / "state-ae.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=pattern) as err:
        main(command(train_dataset, out, "--resume", "--stage", "ae")[4:])
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert message.endswith("delete it to restart the stage, or pass -f instead of --resume "
                            "to start the run over"), message
    assert path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["state-ae.safetensors"]


def test_model_checkpoint_over_the_state_is_refused(reference, train_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state-ae.safetensors").write_bytes((reference / "ae.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"state-ae\.safetensors: no training-state "
                                              r"metadata \(a model checkpoint copied over it\?"):
        main(command(train_dataset, out, "--resume", "--stage", "ae")[4:])


def test_state_past_the_configs_epochs_is_a_config_error(reference, train_dataset, tmp_path):
    """A run stopped in epoch 3 cannot resume under a config of 2 epochs (it would skip
    the stage's end and report no losses)."""
    out = tmp_path / "run"
    out.mkdir()
    tensors, metadata = read_tensors(reference / "state-ae.safetensors")
    meta = {**json.loads(metadata["state"]), **MID_EPOCH}
    save_file(tensors, str(out / "state-ae.safetensors"), metadata={"state": json.dumps(meta)})
    with pytest.raises(ConfigError, match=r"stopped in epoch 3 of stage ae, but ae\.epochs is "
                                          r"now 2; set ae\.epochs=3 or more"):
        main(command(train_dataset, out, "--resume", "--stage", "ae", "--set", "ae.epochs=2")[4:])


def resume_mid_epoch(reference, data, out, **changes) -> dict:
    """The log record of the epoch resumed from MID_EPOCH (with `changes`)."""
    out.mkdir()
    tensors, metadata = read_tensors(reference / "state-ae.safetensors")
    meta = {**json.loads(metadata["state"]), **MID_EPOCH, **changes}
    save_file(tensors, str(out / "state-ae.safetensors"), metadata={"state": json.dumps(meta)})
    assert main(command(data, out, "--resume", "--stage", "ae")[4:]) == 0
    assert state(out, "ae") == (3, 0, True)
    (record,) = read_log(out)
    assert (record["stage"], record["epoch"]) == ("ae", 3)
    return record


def test_mid_epoch_resume_counts_the_batches_before_it(reference, train_dataset, tmp_path):
    """The epoch's train loss is the carried sum of its first 3 batches plus the 5 trained
    after the resume, over all 8: 8 more in the carried sum is 1 more in the record."""
    low = resume_mid_epoch(reference, train_dataset, tmp_path / "low", loss_sum=0.25)
    high = resume_mid_epoch(reference, train_dataset, tmp_path / "high", loss_sum=8.25)
    assert high["train_loss"] - low["train_loss"] == pytest.approx(1.0, abs=1e-12)
    # The carried 0.5 s count in the epoch's time, and notes_per_s covers all 64 notes.
    assert low["seconds"] >= 0.5
    assert low["notes_per_s"] == pytest.approx(64 / low["seconds"], rel=0.05)
