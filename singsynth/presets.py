"""Presets: YAML files mapping MIDI channels and programs to instruments and playing settings.

A preset (`presets/*.yaml`, read with `yamlfile.load_yaml`: safe and bounded) has optional sections:

    defaults:            # every program of every channel
      instrument: piano  # a name from the checkpoint, an index, or a blend {piano: 0.7, organ: 0.3}
      gain: 1.0          # linear, 0..4
      pan: 0.0           # -1 (left) .. 1 (right)
      release: 0.3       # seconds, 0.005..10
      velocity_curve: 1.0  # exponent on velocity/127 (or linear | soft | hard)
      transpose: 0       # semitones, -48..48
      prewarm: [36, 96]  # MIDI pitch range to render ahead at every velocity level, or null
    programs:            # by General MIDI program number 0-127: overrides `defaults`
      16: {instrument: organ}
    channels:            # by MIDI channel 0-15: overrides the program's settings
      9: {instrument: {guitar: 0.5, strings: 0.5}, gain: 0.8}
      1:                 # instead of `instrument`: a controller sweeps between instruments
        morph: {cc: 1, instruments: [flute, guitar], steps: 16, prewarm: 0.25}

`morph` (see `Morph`, played by `singsynth.engine.morph`): `instruments` are 2-4 names,
indices or blends spread evenly over the controller's range; `cc` the controller (1, the
mod wheel, by default); `steps` the grid of blends notes are made for (8-32); `prewarm`
the share of the grid's steps (0-1) rendered ahead over the patch's prewarm pitch range.
With `cc2` (a second controller: an XY pad), exactly 4 instruments sit at the corners, in
the order (cc low, cc2 low), (cc high, cc2 low), (cc low, cc2 high), (cc high, cc2 high),
and `steps` (4-16, default 8) is per axis: a grid of steps x steps blends.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from singsynth.errors import ConfigError
from singsynth.files import missing, read_bytes, shipped_dir, shipped_or_path
from singsynth.notes import Blend
from singsynth.yamlfile import load_yaml

PRESET_DIR = shipped_dir("presets")
MAX_FILE_BYTES = 1 << 20  # a preset is a few KB (gm.yaml, the largest shipped, is 5 KB)
CURVES = {"linear": 1.0, "soft": 0.6, "hard": 1.6}
PATCH_KEYS = ("instrument", "gain", "pan", "release", "velocity_curve", "transpose", "prewarm",
              "morph")
MORPH_KEYS = ("cc", "cc2", "instruments", "steps", "prewarm")
# Controllers the engine acts on itself (bank select, data entry, volume, pan, expression,
# sustain, (N)RPN selects, channel mode messages): a morph cannot also listen to them.
RESERVED_CCS = frozenset((0, 6, 7, 10, 11, 32, 38, 64, 98, 99, 100, 101) + tuple(range(120, 128)))


@dataclass(frozen=True)
class Morph:
    """A controller that sweeps a patch between instruments.

    Attributes:
        cc: MIDI controller number (1 = mod wheel).
        instruments: 2-4 blends, placed evenly from controller value 0 to 127.
        steps: how many blends along the way notes are made for (grid points, ends included).
        prewarm: share 0-1 of the grid's steps prewarmed (spread evenly, ends included).
        cc2: a second controller for a 2-D (XY) grid of 4 corner instruments, or None;
            then `steps` is per axis.
    """

    cc: int
    instruments: Tuple[Blend, ...]
    steps: int
    prewarm: float = 0.25
    cc2: Optional[int] = None


def default_steps(instruments: int) -> int:
    """The smallest grid of at least 16 steps that lands on every instrument (steps - 1 a
    multiple of instruments - 1): 16 for 2 or 4 instruments, 17 for 3."""
    steps = 16
    while (steps - 1) % (instruments - 1):
        steps += 1
    return steps
TOP_KEYS = ("name", "description", "defaults", "programs", "channels")


@dataclass(frozen=True)
class Patch:
    """How a note on one channel and program is played.

    Attributes:
        instrument: blend of instrument indices and weights (weights sum to 1); with
            `morph`, its first instrument (what the controller at 0 plays).
        morph: a `Morph`, or None for a fixed instrument.
        gain: linear gain. pan: -1..1. release: seconds. velocity_curve: exponent applied
        to velocity / 127 before quantising. transpose: semitones added to the pitch.
        prewarm: (low, high) MIDI pitches to render ahead, inclusive, or None.
    """

    instrument: Blend = ((0, 1.0),)
    gain: float = 1.0
    pan: float = 0.0
    release: float = 0.3
    velocity_curve: float = 1.0
    transpose: int = 0
    prewarm: Optional[Tuple[int, int]] = None
    morph: Optional[Morph] = None


@dataclass
class Preset:
    """Patches per (channel, program), resolved once at load time.

    Attributes:
        name: the preset's name. instruments: the checkpoint's instrument names.
        defaults: the patch used where nothing else is said.
        programs, channels: the partial overrides as read (validated).
    """

    name: str
    instruments: Tuple[str, ...]
    defaults: Patch = field(default_factory=Patch)
    programs: Dict[int, dict] = field(default_factory=dict)
    channels: Dict[int, dict] = field(default_factory=dict)

    def __post_init__(self):
        self._patches: Dict[Tuple[int, int], Patch] = {}

    def patch(self, channel: int, program: int) -> Patch:
        """The patch for a MIDI channel (0-15) playing a program (0-127)."""
        got = self._patches.get((channel, program))
        if got is None:
            got = replace(self.defaults, **self.programs.get(program, {}))
            got = replace(got, **self.channels.get(channel, {}))
            self._patches[(channel, program)] = got
        return got

    def morph_ccs(self) -> frozenset:
        """The controllers any morph patch of the preset listens to."""
        said = [self.defaults.morph] + [part.get("morph") for part in
                                        list(self.programs.values()) + list(self.channels.values())]
        return frozenset(cc for m in said if m is not None for cc in (m.cc, m.cc2)
                         if cc is not None)

    def prewarm_patches(self):
        """Every distinct patch the preset names that has a prewarm range."""
        seen = [self.defaults] + [self.patch(c, 0) for c in self.channels] \
            + [self.patch(0, p) for p in self.programs]
        out = []
        for p in seen:
            if p.prewarm and p not in out:
                out.append(p)
        return out


def _short(text: str) -> str:
    """`text` cut to about 200 characters: a key or value quoted in full in an error
    could be a 100,000-value list."""
    return text if len(text) <= 200 else text[:150] + " ... " + text[-40:]


def _fail(origin: str, key: str, problem: str, allowed: str) -> ConfigError:
    return ConfigError(f"{origin}: key '{_short(key)}': {_short(problem)}; allowed: {allowed}")


def _number(origin, key, value, low, high, integer=False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise _fail(origin, key, f"got {value!r}", f"{kind} from {low} to {high}")
    return int(value) if integer else float(value)


def parse_blend(origin: str, key: str, value, instruments: Sequence[str]) -> Blend:
    """An instrument name, index or {name: weight} mapping -> a normalised `Blend`."""
    names = ", ".join(instruments)
    allowed = f"one of {names} (or an index 0-{len(instruments) - 1}, or a mapping name: weight)"

    def index(name):
        if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(instruments):
            return name
        if isinstance(name, str) and name in instruments:
            return list(instruments).index(name)
        raise _fail(origin, key, f"unknown instrument {name!r}", allowed)

    if isinstance(value, dict):
        if not value:
            raise _fail(origin, key, "empty blend", allowed)
        weights = {}
        for name, w in value.items():
            w = _number(origin, f"{key}.{name}", w, 0.0, 1e6)
            i = index(name)
            weights[i] = weights.get(i, 0.0) + w
        total = sum(weights.values())
        if total <= 0:
            raise _fail(origin, key, "blend weights sum to 0", "positive weights")
        # Rounded so that the same blend written twice is the same cache key.
        return tuple((i, round(w / total, 6)) for i, w in sorted(weights.items()) if w > 0)
    return ((index(value), 1.0),)


def parse_morph(origin: str, key: str, raw, instruments: Sequence[str]) -> Morph:
    """Validate a `morph:` mapping -> `Morph`."""
    if not isinstance(raw, dict):
        raise _fail(origin, key, f"expected a mapping, got {raw!r}",
                    "{cc: 1, instruments: [A, B], steps: 16, prewarm: 0.25}")
    for name in raw:
        if name not in MORPH_KEYS:
            raise _fail(origin, f"{key}.{name}", "unknown key", ", ".join(MORPH_KEYS))
    names = raw.get("instruments")
    if not (isinstance(names, list) and 2 <= len(names) <= 4):
        raise _fail(origin, f"{key}.instruments", f"got {names!r}",
                    "a list of 2 to 4 instruments (names, indices or blends)")
    blends = tuple(parse_blend(origin, f"{key}.instruments[{i}]", name, instruments)
                   for i, name in enumerate(names))
    cc = _controller(origin, f"{key}.cc", raw.get("cc", 1))
    cc2 = None
    if raw.get("cc2") is not None:
        cc2 = _controller(origin, f"{key}.cc2", raw["cc2"])
        if cc2 == cc:
            raise _fail(origin, f"{key}.cc2", f"the same controller as cc ({cc})",
                        "another controller than cc")
        if len(blends) != 4:
            raise _fail(origin, f"{key}.instruments", f"{len(blends)} instruments with cc2",
                        "exactly 4 with cc2 (the corners of the XY pad)")
    # In 2-D, steps is per axis: 8 x 8 = 64 notes a key already.
    low, high, default = (4, 16, 8) if cc2 else (8, 32, default_steps(len(blends)))
    steps = _number(origin, f"{key}.steps", raw.get("steps", default), low, high, integer=True)
    share = _number(origin, f"{key}.prewarm", raw.get("prewarm", 0.25), 0.0, 1.0)
    return Morph(cc, blends, steps, share, cc2)


def _controller(origin: str, key: str, value) -> int:
    """A controller number a morph may listen to."""
    cc = _number(origin, key, value, 1, 119, integer=True)
    if cc in RESERVED_CCS:
        raise _fail(origin, key, f"controller {cc} already has a meaning here "
                    "(bank, volume, pan, expression, sustain or RPN)",
                    "1-119 but not 6, 7, 10, 11, 32, 38, 64 or 98-101 (1 = mod wheel)")
    return cc


def parse_patch(origin: str, where: str, raw, instruments: Sequence[str]) -> dict:
    """Validate one patch mapping; returns the fields it sets (a partial `Patch`)."""
    if not isinstance(raw, dict):
        raise _fail(origin, where, f"expected a mapping, got {raw!r}", ", ".join(PATCH_KEYS))
    if "instrument" in raw and "morph" in raw:
        raise _fail(origin, f"{where}.morph", "given together with 'instrument'",
                    "one of instrument or morph per patch")
    out = {}
    for key, value in raw.items():
        full = f"{where}.{key}"
        if key == "instrument":
            out[key] = parse_blend(origin, full, value, instruments)
            out["morph"] = None  # a fixed instrument here replaces a morph said above
        elif key == "morph":
            out[key] = parse_morph(origin, full, value, instruments)
            out["instrument"] = out[key].instruments[0]
        elif key == "gain":
            out[key] = _number(origin, full, value, 0.0, 4.0)
        elif key == "pan":
            out[key] = _number(origin, full, value, -1.0, 1.0)
        elif key == "release":
            out[key] = _number(origin, full, value, 0.005, 10.0)
        elif key == "velocity_curve":
            if isinstance(value, str):
                if value not in CURVES:
                    raise _fail(origin, full, f"got {value!r}", f"{', '.join(CURVES)} or a number 0.1-10")
                out[key] = CURVES[value]
            else:
                out[key] = _number(origin, full, value, 0.1, 10.0)
        elif key == "transpose":
            out[key] = _number(origin, full, value, -48, 48, integer=True)
        elif key == "prewarm":
            if value is None:
                out[key] = None
                continue
            if not (isinstance(value, list) and len(value) == 2):
                raise _fail(origin, full, f"got {value!r}", "[low, high] MIDI pitches 0-127, or null")
            lo = _number(origin, full, value[0], 0, 127, integer=True)
            hi = _number(origin, full, value[1], lo, 127, integer=True)
            out[key] = (lo, hi)
        else:
            raise _fail(origin, full, "unknown key", ", ".join(PATCH_KEYS))
    return out


def parse_preset(data, instruments: Sequence[str], origin: str = "<preset>", name: str = "preset") -> Preset:
    """Build a `Preset` from already-loaded YAML data; errors name `origin` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(origin, "<top>", f"expected a mapping, got {type(data).__name__}", ", ".join(TOP_KEYS))
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(origin, str(key), "unknown key", ", ".join(TOP_KEYS))
    if isinstance(data.get("name"), (list, dict)):
        raise _fail(origin, "name", f"got {data['name']!r}", "a string")
    defaults = Patch(**parse_patch(origin, "defaults", data.get("defaults") or {}, instruments))
    sections = {}
    for section, high in (("programs", 127), ("channels", 15)):
        raw = data.get(section) or {}
        if not isinstance(raw, dict):
            raise _fail(origin, section, f"expected a mapping, got {raw!r}", f"numbers 0-{high} mapped to settings")
        parsed = {}
        for number, patch in raw.items():
            n = _number(origin, f"{section}.{number}", number, 0, high, integer=True)
            parsed[n] = parse_patch(origin, f"{section}.{number}", patch, instruments)
        sections[section] = parsed
    return Preset(str(data.get("name", name)), tuple(instruments), defaults,
                  sections["programs"], sections["channels"])


def available_presets():
    """Names of the presets shipped in `presets/`."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(path_or_name: Union[str, Path, None], instruments: Sequence[str]) -> Preset:
    """Load a preset by file path or by name ("default", "gm": files in `presets/`).

    Raises:
        ConfigError: missing file, bad YAML, unknown key, wrong type or unknown instrument;
            the message names the file, the key and the allowed values.
    """
    if path_or_name is None:
        path_or_name = "default"
    path = shipped_or_path(str(path_or_name), PRESET_DIR, ".yaml")
    if missing(path):
        raise ConfigError(f"preset {str(path_or_name)!r} not found: give a .yaml file or one of "
                          f"{', '.join(available_presets()) or '(none shipped)'}")
    # A regular file of bounded size (a folder, a FIFO, /dev/zero are named, not read).
    raw = read_bytes(path, "a YAML preset (.yaml)", MAX_FILE_BYTES, ConfigError)
    try:
        data = load_yaml(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file, so not a YAML preset; give a .yaml file "
                          "or one of " + ", ".join(available_presets())) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the preset ({e.strerror or e})") from None
    return parse_preset(data, instruments, origin=str(path), name=path.stem)


def host_preset(name: Union[str, Path, None], instruments: Sequence[str]) -> Preset:
    """The preset a host plays: `name`, or with None the GM preset (once shipped, else
    the one-instrument default), as `play` and `render` both do.

    Raises:
        ConfigError: in one line saying what to pass when the GM preset does not fit the
            model (it names the default model's instruments; another model has its own).
    """
    if name is not None:
        return load_preset(name, instruments)
    name = "gm" if (PRESET_DIR / "gm.yaml").is_file() else "default"
    try:
        return load_preset(name, instruments)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the default preset {name!r} is made for the default "
                          "model: pass --preset gm19 for a model of the former "
                          "19-instrument default, --preset default to play this model's "
                          "first instrument, or a preset naming its instruments)") from None
