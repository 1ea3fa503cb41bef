"""Checkpoints round-trip exactly; every bad or unsafe file is refused, nothing executed."""
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from singsynth.errors import CheckpointError
from singsynth.model.checkpoint import load_checkpoint, load_model, model_metadata, save_model
from singsynth.model.sing import build


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


def _rewrite(tiny_checkpoint, path, tensors=None, **meta):
    """A copy of the tiny checkpoint with some tensors and metadata fields replaced."""
    model = load_model(tiny_checkpoint)
    metadata = model_metadata(model)
    metadata.update(meta)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights.update(tensors or {})
    save_file(weights, path, metadata=metadata)
    return path


def test_nan_or_infinite_weights_are_refused(tiny_checkpoint, tmp_path):
    for value in (float("nan"), float("inf")):
        weight = load_model(tiny_checkpoint).decoder.conv2.weight.detach().clone()
        weight[0, 0, 0] = value
        bad = _rewrite(tiny_checkpoint, tmp_path / f"{value}.safetensors",
                       {"decoder.conv2.weight": weight})
        expect_refused(bad, "decoder.conv2.weight", "NaN or infinite")


def test_a_header_describing_a_huge_model_is_refused_before_memory_is_taken(
        tiny_checkpoint, tmp_path):
    """The tiny file's header claims a model of about 5 GB: its shapes are compared on
    torch's meta device, so the refusal costs no memory."""
    import json
    import resource

    config = load_model(tiny_checkpoint).config.to_dict()
    config.update(channels=16384, lstm_hidden=8192)
    bad = _rewrite(tiny_checkpoint, tmp_path / "huge.safetensors", config=json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expect_refused(bad, "shape")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"the refusal took {grown_mb:.0f} MB"


@pytest.mark.parametrize("field, value, words", [
    ("config", {"sample_rate": 0}, ("sample_rate", "1000..384000")),
    ("config", {"channels": True}, ("channels", "integer")),
    ("config", {"stride": 300}, ("multiples of stride",)),
    ("pitch_range", [0, 50], ("pitch_range", "[0, 127]")),
    ("velocities", [25, "loud"], ("velocities",)),
    ("instruments", [], ("instruments",)),
    ("provenance", ["a", "list"], ("provenance", "JSON object")),
])
def test_metadata_of_the_wrong_type_or_range_is_refused(tiny_checkpoint, tmp_path, field,
                                                        value, words):
    import json

    if field == "config":
        config = load_model(tiny_checkpoint).config.to_dict()
        config.update(value)
        value = config
    bad = _rewrite(tiny_checkpoint, tmp_path / "meta.safetensors", **{field: json.dumps(value)})
    expect_refused(bad, *words)


def test_deeply_nested_metadata_json_is_refused_in_one_line(tiny_checkpoint, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    bad = _rewrite(tiny_checkpoint, tmp_path / "deep.safetensors", provenance=deep)
    expect_refused(bad, "provenance", "not valid JSON")


def test_a_metadata_number_of_5000_digits_is_refused_in_one_line(tiny_checkpoint, tmp_path):
    # json.loads raises a plain ValueError (Python's int-conversion limit) for it.
    bad = _rewrite(tiny_checkpoint, tmp_path / "digits.safetensors",
                   config='{"kernel": ' + "9" * 5000 + "}")
    expect_refused(bad, "config", "not valid JSON")


def test_a_bare_model_name_is_a_shipped_model_whatever_the_current_folder_holds(
        tmp_path, monkeypatch):
    from singsynth.model.header import MODELS_DIR, resolve

    (tmp_path / "default").mkdir()
    (tmp_path / "mine").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert resolve() == MODELS_DIR / "default.safetensors"
    assert resolve("default") == MODELS_DIR / "default.safetensors"
    assert resolve("mine").resolve() == tmp_path / "mine"
    assert resolve("elsewhere") == MODELS_DIR / "elsewhere.safetensors"


def test_loading_builds_the_described_model_without_importing_torch_dynamo(tmp_path):
    """The shape check builds the described model on torch's meta device. Ops that have
    no meta kernel there (hann_window, arange, normal_) run Python decompositions whose
    first use imports torch._dynamo: 1.3-2 s added to every command that loads a model."""
    paths = []
    for config in ("tiny", "tiny-harmonic"):
        path = tmp_path / f"{config}.safetensors"
        save_model(path, build(config, ["a", "b"]), {"dataset": "none (test)"})
        paths.append(str(path))
    code = ("import sys, torch\n"
            "from singsynth.model.checkpoint import load_model\n"
            f"for path in {paths!r}:\n"
            "    load_model(path)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("sizes, words", [
    # Every size within its limits, weights of the right shapes: it loaded, then the
    # first note crashed (the decoder made 63,997 samples for 64,000).
    ({"stride": 1, "window": 1}, ("window 1 must be 4 x stride 1", "63997 samples")),
    ({"stride": 256, "window": 512}, ("window 512 must be 4 x stride 256",)),
    ({"stride": 125, "window": 500, "kernel": 2}, ("kernel 2 with stride 125",)),
])
def test_a_config_whose_lengths_do_not_add_up_is_refused_at_load(tmp_path, sizes, words):
    import dataclasses

    from singsynth.model.config import CONFIGS
    from singsynth.model.sing import SING

    # SING's constructor does not check its config: a hostile file can be made this way.
    config = dataclasses.replace(CONFIGS["tiny"], **sizes)
    model = SING(config, ["piano"], [25, 50, 75, 100, 127], n_pitches=128)
    path = tmp_path / "bad-lengths.safetensors"
    save_model(path, model)
    expect_refused(path, *words)


@pytest.mark.parametrize("config", ["7", "[1, 2]", '"text"'])
def test_a_config_that_is_not_an_object_is_one_line_through_the_header_reader(
        tiny_checkpoint, tmp_path, config):
    # Found by the fuzzer: open_source (play's and render's first read) raised
    # AttributeError ('int' object has no attribute 'get').
    from singsynth.model.files import open_source

    bad = _rewrite(tiny_checkpoint, tmp_path / "config.safetensors", config=config)
    with pytest.raises(CheckpointError, match="model config must be a mapping") as err:
        open_source(bad)
    assert "\n" not in str(err.value)


def test_a_corrupt_header_quoted_in_the_error_is_escaped(tiny_checkpoint, tmp_path):
    # Found by the fuzzer: safetensors quotes the header's bytes, newlines and escapes too.
    data = bytearray(tiny_checkpoint.read_bytes())
    size = int.from_bytes(data[:8], "little")
    # A dtype of ESC [31m red, newline, JSON-escaped: safetensors decodes it, then quotes it.
    header = data[8:8 + size].replace(b'"F32"', b'"\\u001b[31mred\\n"', 1)
    bad = tmp_path / "escape.safetensors"
    bad.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + size:])
    message = expect_refused(bad, "not a readable safetensors file")
    assert "\n" not in message and "\x1b" not in message


def test_a_metadata_value_with_newlines_and_escapes_is_quoted_in_its_error(tiny_checkpoint,
                                                                             tmp_path):
    # Found by the fuzzer: the value was printed raw, so a file could forge a second line
    # or drive the terminal.
    import json

    bad = _rewrite(tiny_checkpoint, tmp_path / "forged.safetensors",
                   provenance=json.dumps("\x1b[2J\nsinging: all fine"))
    message = expect_refused(bad, "provenance", "JSON object", "\\x1b[2J\\n")
    assert "\n" not in message and "\x1b" not in message
