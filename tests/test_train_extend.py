"""Adding an instrument to a trained model: `singsynth train --init CKPT --extend`."""
import json

import pytest
import torch

from singsynth.cli import train as cli
from singsynth.errors import ConfigError
from singsynth.model.checkpoint import load_checkpoint
from singsynth.train import run
from singsynth.train.config import load_config
from tests.conftest import TINY_INSTRUMENTS
from tests.train_fixtures import TINY, write_synthetic

# Short crops near the start keep the e2e steps cheap (the LSTM runs from step 0 to the
# crop's end); the held-out loss is scored on whole notes, a deterministic function of
# the one trained row, so "it fell" is a fair test.
SETTINGS = ["e2e.epochs=3", "e2e.batch=8", "e2e.lr=0.05", "e2e.crop=2048", "e2e.crop_end=4096",
            "e2e.eval_notes=4"]


@pytest.fixture(scope="module")
def new_data(tmp_path_factory):
    """One instrument the tiny checkpoint lacks ("cello") and one it has ("organ", whose
    notes must not move its frozen row), 12 pitches x 2 velocities each."""
    return write_synthetic(tmp_path_factory.mktemp("extend") / "cello", ["organ", "cello"],
                           range(55, 67))


@pytest.fixture(scope="module")
def extended(tiny_checkpoint, new_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("extend-run")
    assert cli.main(["--config", TINY, "--data", str(new_data), "--out", str(out),
                     "--init", str(tiny_checkpoint), "--extend",
                     *sum((["--set", s] for s in SETTINGS), [])]) == 0
    return out


def test_vocabulary_grows_and_old_weights_are_bit_for_bit(tiny_checkpoint, extended):
    old, _ = load_checkpoint(tiny_checkpoint)
    new, info = load_checkpoint(extended / "model.safetensors")
    assert new.instruments == TINY_INSTRUMENTS + ["cello"]
    assert info["provenance"]["extended"]["added"] == ["cello"]
    a, b = old.state_dict(), new.state_dict()
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "sequence.instrument.weight":
            assert torch.equal(a[name], b[name][:4])
        else:
            assert torch.equal(a[name], b[name]), name
    # The new row trained away from the row it started from.
    assert not any(torch.equal(b["sequence.instrument.weight"][4], row)
                   for row in a["sequence.instrument.weight"])


def test_old_instruments_play_exactly_as_before(tiny_checkpoint, extended):
    old, _ = load_checkpoint(tiny_checkpoint)
    new, _ = load_checkpoint(extended / "model.safetensors")
    inst, pitch, vel = torch.tensor([0, 1, 2, 3]), torch.tensor([40, 60, 72, 90]), torch.tensor([0, 2, 4, 3])
    assert torch.equal(old.generate(inst, pitch, vel), new.generate(inst, pitch, vel))
    assert new.generate(torch.tensor([4]), torch.tensor([60]), torch.tensor([4])).abs().max() > 0


def test_the_new_instrument_learns(extended):
    log = [json.loads(line) for line in (extended / "log.jsonl").read_text().splitlines()]
    held_out = [r["test_spectral"] for r in log if r["stage"] == "e2e"]
    assert len(held_out) == 3 and held_out[-1] < held_out[0]


def test_refusals(tiny_checkpoint, new_data, tmp_path):
    with pytest.raises(ConfigError, match="pass --extend"):
        run(load_config(TINY, SETTINGS + [f"init={tiny_checkpoint}"]), new_data, tmp_path / "a",
            ("e2e",))
    with pytest.raises(ConfigError, match="needs init"):
        run(load_config(TINY, SETTINGS + ["extend=true"]), new_data, tmp_path / "b", ("e2e",))
    with pytest.raises(ConfigError, match="ae stage"):
        run(load_config(TINY, SETTINGS + ["extend=true", f"init={tiny_checkpoint}"]), new_data,
            tmp_path / "c", ("ae", "lstm", "e2e"))
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(TINY, ["extend=3"])
    same = write_synthetic(tmp_path / "same", ["organ"], range(55, 60))
    with pytest.raises(ConfigError, match="nothing to add"):
        run(load_config(TINY, SETTINGS + ["extend=true", f"init={tiny_checkpoint}"]), same,
            tmp_path / "d", ("e2e",))


def test_eval_reads_the_dataset_by_the_extended_vocabulary(extended, new_data):
    from singsynth.eval.evaluate import open_splits
    model, _ = load_checkpoint(extended / "model.safetensors")
    train, test = open_splits(new_data, model.instruments)
    assert set(train.instrument.tolist()) == {1, 4} and set(test.instrument.tolist()) <= {1, 4}
