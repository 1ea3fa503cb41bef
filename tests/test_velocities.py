"""The engine maps a played velocity through the velocities its model was trained at,
read from the checkpoint, not through NSynth's five."""
import pytest

from singsynth.engine import Synth
from singsynth.errors import CheckpointError
from singsynth.generation.testing import SineSource
from singsynth.model.checkpoint import load_model, save_model
from singsynth.model.files import open_source
from singsynth.model.sing import build
from singsynth.notes import TRAINED_VELOCITIES, velocity_index


def test_velocity_index_follows_the_given_velocities():
    assert velocity_index(50, TRAINED_VELOCITIES) == 1.0
    assert velocity_index(62.5, TRAINED_VELOCITIES) == 1.5
    assert velocity_index(60, (40, 80, 120)) == 0.5
    assert velocity_index(127, (40, 80, 120)) == 2.0
    assert velocity_index(10, (40, 80, 120)) == 0.0


@pytest.mark.parametrize("velocities", [(25, 50, 75, 100, 127), (40, 80, 120), (64, 127)])
def test_synth_keys_index_the_sources_own_velocities(velocities):
    synth = Synth(SineSource(velocities=velocities), 16000, offline=True)
    top = synth.note_key(0, 60, 127).velocity
    assert top == len(velocities) - 1
    # A played velocity equal to a trained one lands on its row (to the level's centre).
    for row, v in enumerate(velocities):
        key = synth.note_key(0, 60, v)
        assert abs(key.velocity - row) < 0.15, (v, key.velocity)


def test_a_checkpoint_trained_at_other_velocities_is_played_through_them(tmp_path):
    path = tmp_path / "three.safetensors"
    save_model(path, build("tiny", ["a", "b"], velocities=(40, 80, 120)), {"dataset": "test"})
    lazy = open_source(str(path))
    assert tuple(lazy.velocities) == (40, 80, 120)
    assert tuple(open_source(str(path), lazy=False).velocities) == (40, 80, 120)
    synth = Synth(lazy, 16000, "default", offline=True)
    assert synth.note_key(0, 60, 127).velocity == 2.0
    assert abs(synth.note_key(0, 60, 80).velocity - 1.0) < 0.15
    # With NSynth's five, velocity 80 would have been row 2.2 of 3: past the model's rows.


def test_velocities_out_of_order_are_refused_in_one_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_model(path, build("tiny", ["a"], velocities=(100, 50)), {"dataset": "test"})
    with pytest.raises(CheckpointError, match="ascending"):
        load_model(path)
    with pytest.raises(CheckpointError, match="ascending"):
        open_source(str(path))
