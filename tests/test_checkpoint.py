"""Checkpoints round-trip exactly; every bad or unsafe file is refused, nothing executed."""
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from singsynth.checkpoint import load_checkpoint, load_model, model_metadata, save_model
from singsynth.errors import CheckpointError
from singsynth.model import build


def test_round_trip_is_bit_exact(tiny_checkpoint, tmp_path):
    torch.manual_seed(1234)
    original = build("tiny", ["piano", "organ", "guitar", "strings"])
    loaded = load_model(tiny_checkpoint)
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.instruments == ["piano", "organ", "guitar", "strings"]
    assert loaded.provenance["stage"] == "init"
    args = (torch.tensor([3]), torch.tensor([64]), torch.tensor([4]))
    assert torch.equal(original.eval().generate(*args), loaded.generate(*args))
    again = tmp_path / "again.safetensors"
    save_model(again, loaded, loaded.provenance)
    assert not list(tmp_path.glob("*.tmp"))
    assert torch.equal(load_model(again).generate(*args), loaded.generate(*args))


def expect_refused(path, *words):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


def test_missing_file(tmp_path):
    expect_refused(tmp_path / "nope.safetensors", "no such checkpoint")


def test_truncated_file(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        expect_refused(bad, "truncated or corrupt")


def test_wrong_shapes_and_unknown_version(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["decoder.conv2.weight"] = torch.zeros(3, 3, 1)
    bad = tmp_path / "shape.safetensors"
    save_file(tensors, bad, metadata=model_metadata(model))
    expect_refused(bad, "decoder.conv2.weight", "shape")

    future = tmp_path / "future.safetensors"
    meta = dict(model_metadata(model), format_version="99")
    save_file(dict(model.state_dict()), future, metadata=meta)
    expect_refused(future, "version '99'")

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    expect_refused(foreign, "not a singsynth checkpoint")

    bad_json = tmp_path / "badjson.safetensors"
    save_file(dict(model.state_dict()), bad_json,
              metadata=dict(model_metadata(model), instruments="[oops"))
    expect_refused(bad_json, "instruments")


class Exploit:
    """Unpickling this creates a marker file: the side effect must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "marker"
    evil = tmp_path / f"evil{protocol}.safetensors"
    evil.write_bytes(pickle.dumps(Exploit(marker), protocol=protocol))
    expect_refused(evil)
    assert not marker.exists()


def test_torch_save_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "model.pt"
    torch.save({"payload": Exploit(marker)}, evil)
    message = expect_refused(evil, "pickle")
    assert "never unpickles" in message
    assert not marker.exists()


def test_cli_info_prints_one_line_and_fails(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Exploit(marker), protocol=4))
    run = subprocess.run([sys.executable, "-m", "singsynth", "info", str(evil)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and str(evil) in lines[0]
    assert not marker.exists()


def test_cli_info_describes_checkpoint_and_config(tiny_checkpoint):
    run = subprocess.run([sys.executable, "-m", "singsynth", "info", str(tiny_checkpoint)],
                         capture_output=True, text=True, check=True)
    assert "instruments (4): 0:piano, 1:organ, 2:guitar, 3:strings" in run.stdout
    paper = subprocess.run([sys.executable, "-m", "singsynth", "info", "--config", "paper"],
                           capture_output=True, text=True, check=True)
    assert "243.2 MB float32" in paper.stdout


def test_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    # Pad the provenance until the 8-byte header length has 0x80 as its first byte.
    for pad in range(0, 512):
        path = tmp_path / "padded.safetensors"
        save_model(path, model, {"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.skip("could not construct a header length starting with 0x80")
    assert load_model(path).instruments == model.instruments
