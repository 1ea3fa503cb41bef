"""Pitch-completion split: deterministic, disjoint, written once and reused."""
import json

import pytest

from singsynth.data.split import load_split, make_split
from singsynth.errors import DatasetError


def pitches_of(split, part):
    return {(inst, p) for inst, ps in split[part].items() for p in ps}


def test_split_is_deterministic_disjoint_and_covering():
    data = {"a": range(21, 109), "b": range(40, 60), "c": [60, 61], "d": [60]}
    s1, s2 = make_split(data), make_split(data)
    assert s1 == s2
    train, test = pitches_of(s1, "train"), pitches_of(s1, "test")
    assert not train & test
    assert train | test == {(i, p) for i, ps in data.items() for p in ps}
    assert len(s1["test"]["a"]) == 9            # 10% of 88
    assert len(s1["test"]["b"]) == 2            # 10% of 20
    assert len(s1["test"]["c"]) == 1            # at least one when >= 2 pitches
    assert s1["test"]["d"] == [] and s1["train"]["d"] == [60]


def test_seed_changes_split_but_other_instruments_do_not():
    data = {"a": range(21, 109), "b": range(21, 109)}
    assert make_split(data, seed=0)["test"]["a"] != make_split(data, seed=1)["test"]["a"]
    bigger = dict(data, z=range(30, 90))
    assert make_split(bigger)["test"]["a"] == make_split(data)["test"]["a"]


def test_load_split_writes_once_then_reuses(tmp_path):
    data = {"a": range(21, 109)}
    first = load_split(tmp_path, data)
    path = tmp_path / "split.json"
    assert json.loads(path.read_text())["test"] == first["test"]
    # A hand-edited split is reused as written, never recomputed.
    edited = dict(first, test={"a": [21]}, train={"a": list(range(22, 109))})
    path.write_text(json.dumps(edited))
    assert load_split(tmp_path, data)["test"] == {"a": [21]}


def test_load_split_refuses_data_it_does_not_cover(tmp_path):
    load_split(tmp_path, {"a": range(21, 30)})
    with pytest.raises(DatasetError, match=r"split.json does not cover instrument 'a' pitch 30"):
        load_split(tmp_path, {"a": range(21, 31)})


def test_load_split_refuses_malformed_file(tmp_path):
    (tmp_path / "split.json").write_text("{not json")
    with pytest.raises(DatasetError, match="split.json is malformed"):
        load_split(tmp_path, {"a": [60]})
