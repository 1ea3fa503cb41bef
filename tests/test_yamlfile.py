"""YAML a user hands in (presets, training configs) is parsed with bounds: hostile
documents are one ConfigError line, quickly, before any value is expanded."""
import time

import pytest

from singsynth.errors import ConfigError
from singsynth.presets import load_preset
from singsynth.train.config import load_config
from singsynth.yamlfile import MAX_VALUES, load_yaml

INSTRUMENTS = ["piano", "organ"]


def billion_laughs(holder="description", key="name"):
    """Ten lists of ten aliases of the list before, under `holder`, and `key` an alias of
    the last: 10^10 values once expanded (by the str() of a name or an error message)."""
    lines = [f"{holder}:", "  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append(f"{key}: *a9")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs": (billion_laughs(), "aliases expand to more than"),
    "nested 5,000 deep": ("defaults: " + "[" * 5000 + "]" * 5000, "nested more than 32 levels"),
    "nested mappings": ("defaults: {instrument: " + "{a: " * 5000 + "1" + "}" * 5001,
                        "nested more than 32 levels"),
    "5,000 digits": ("defaults: {gain: " + "9" * 5000 + "}", "an integer of 5000 digits"),
    "alias loop": ("defaults: &d {instrument: *d}", "refers to a value that contains it"),
    "13th month": ("name: 2001-13-45", r"cannot be read \(ValueError: month"),
    "empty !!int": ("defaults: {gain: !!int ''}", r"cannot be read \(IndexError"),
    "bad timestamp": ("name: !!timestamp 5", "cannot be read"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_preset_is_one_line_and_quick(tmp_path, name):
    text, pattern = HOSTILE[name]
    path = tmp_path / "p.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=pattern) as err:
        load_preset(str(path), INSTRUMENTS)
    # Bounds, not timing targets: unbounded, the laughs ran for minutes and took GBs.
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("name", ["billion laughs", "nested 5,000 deep", "5,000 digits"])
def test_a_hostile_training_config_or_override_is_one_line(tmp_path, name):
    text, pattern = HOSTILE[name]
    path = tmp_path / "c.yaml"
    if name == "billion laughs":
        text = billion_laughs("init", "model")
    path.write_text(text.replace("defaults:", "ae:"))
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("value, pattern", [("[" * 5000, "nested more than 32 levels"),
                                            ("9" * 5000, "an integer of 5000 digits")])
def test_a_hostile_override_is_one_line(value, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(None, ["ae.epochs=" + value])
    assert str(err.value).startswith("override 'ae.epochs=") and "\n" not in str(err.value)


def test_aliases_within_the_bound_still_work():
    # An anchor reused (and a merge key) is ordinary YAML; only the expansion is bounded.
    data = load_yaml("base: &b {gain: 0.5}\nx: {<<: *b, pan: 1}\ny: [*b, *b]", "t")
    assert data["x"] == {"gain": 0.5, "pan": 1} and data["y"] == [{"gain": 0.5}] * 2
    fits = "a: &a [" + ", ".join(["1"] * 99) + "]\nb: [" + ", ".join(["*a"] * 99) + "]"
    assert len(load_yaml(fits, "t")["b"]) == 99        # 99 * 100 values < MAX_VALUES
    assert 99 * 100 < MAX_VALUES


def test_a_preset_name_must_be_a_string_and_long_values_are_cut_in_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: [1, 2]")
    with pytest.raises(ConfigError, match=r"key 'name': got \[1, 2\]; allowed: a string"):
        load_preset(str(path), INSTRUMENTS)
    path.write_text("defaults: {gain: [" + ", ".join(["1"] * 2_000) + "]}")
    with pytest.raises(ConfigError, match=r"key 'defaults\.gain': got \[1, 1.* \.\.\. ") as err:
        load_preset(str(path), INSTRUMENTS)
    assert len(str(err.value)) < 400


def test_a_control_character_is_one_line(tmp_path):
    # PyYAML's reader refuses it while the loader is being made, before any parsing.
    path = tmp_path / "p.yaml"
    path.write_text("name: bell\x07\n")
    with pytest.raises(ConfigError, match="not valid YAML .*unacceptable character #x0007"):
        load_preset(str(path), INSTRUMENTS)
