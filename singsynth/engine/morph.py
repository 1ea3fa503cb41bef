"""Live timbre morphing: a controller sweeps a held note between instruments.

A patch with a `Morph` (presets.py) lays a grid of `steps` blends evenly between its 2-4
instruments; controller value 0 plays the first, 127 the last. Each step is an ordinary
note (a `NoteKey` whose instrument is a blend), generated and cached like any other, so
memory stays within the note cache's LRU budget. A `MorphVoice` plays the steps nearest
the controller's position from the same note-on, at the same read position, and
crossfades between them sample by sample:

- the position x = value / 127 * (steps - 1) is played as the two steps around it with
  linear weights (1 - frac, frac): neighbouring steps are close blends, so their sum keeps
  the level;
- when the controller moves, the weights glide linearly to the new ones over `GLIDE`
  seconds (per sample, from the event's own sample): a controller moving in steps of 1/127
  makes no zipper noise and a jump makes no click;
- a step that is not generated yet is requested like a cold note (with the next one in the
  direction of travel); until it is whole, the voice glides to the nearest ready step, and
  on to the wanted ones when they arrive.

With a second controller (`cc2`, an XY pad) the grid is steps x steps blends between 4
corner instruments, and the position is played as the (up to) four steps around it with
bilinear weights; the rest is the same.

Audio thread only; no torch.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Optional

import numpy as np

from singsynth.engine.voice import _RAMP32, Voice
from singsynth.generation.note import DONE, Note
from singsynth.notes import Blend, NoteKey
from singsynth.presets import Morph

GLIDE = 0.010  # seconds for the weights to reach a new controller position
FADED = 0.02   # a step's weight below which a new glide hands it to its nearest neighbour


def grid_size(morph: Morph) -> int:
    """Steps in the grid: `steps`, or steps x steps with a second controller (step
    j * steps + i is i along `cc` and j along `cc2`)."""
    return morph.steps * morph.steps if morph.cc2 is not None else morph.steps


def _mix(parts) -> Blend:
    """Sum of (blend, share) pairs -> a normalised `Blend`."""
    weights: Dict[int, float] = {}
    for blend, share in parts:
        for index, w in blend:
            weights[index] = weights.get(index, 0.0) + w * share
    total = sum(weights.values())
    # Rounded as presets.parse_blend rounds: a step equal to a preset's blend is its key.
    return tuple((index, round(w / total, 6)) for index, w in sorted(weights.items())
                 if round(w / total, 6) > 0)


@lru_cache(maxsize=256)
def step_blends(morph: Morph) -> tuple:
    """The grid's blends, `grid_size(morph)` of them: the ends (corners, in 2-D) are the
    instruments exactly, so they share cache keys with plain patches of them."""
    last = morph.steps - 1
    if morph.cc2 is not None:  # bilinear between the 4 corners
        a, b, c, d = morph.instruments
        return tuple(_mix(((a, (1 - u) * (1 - v)), (b, u * (1 - v)), (c, (1 - u) * v), (d, u * v)))
                     for v in (j / last for j in range(morph.steps))
                     for u in (i / last for i in range(morph.steps)))
    out = []
    segments = len(morph.instruments) - 1
    for k in range(morph.steps):
        t = k * segments / last
        i = min(int(t), segments - 1)
        f = t - i
        out.append(_mix(((morph.instruments[i], 1.0 - f), (morph.instruments[i + 1], f))))
    return tuple(out)


def position(morph: Morph, value: int) -> float:
    """Controller `value` 0-127 -> the position along an axis of the grid, 0.0 .. steps - 1."""
    return min(max(value, 0), 127) * (morph.steps - 1) / 127.0


def where(morph: Morph, controls) -> tuple:
    """(x, y) on the grid for a channel's controller values `controls` (indexed by
    controller number); y is None without `cc2`."""
    x = position(morph, controls[morph.cc])
    return x, (None if morph.cc2 is None else position(morph, controls[morph.cc2]))


def grid_weights(morph: Morph, x: float, y: Optional[float]) -> tuple:
    """((step, weight), ...) of the 1-2 (2-D: 1-4) steps around (x, y): linear, bilinear."""
    along = weights_at(x)
    if y is None:
        return along
    n = morph.steps
    return tuple((j * n + i, wi * wj) for j, wj in weights_at(y) for i, wi in along)


def distance(morph: Morph, k: int, x: float, y: Optional[float]) -> float:
    """How far grid step `k` lies from (x, y), in steps."""
    if y is None:
        return abs(k - x)
    return ((k % morph.steps - x) ** 2 + (k // morph.steps - y) ** 2) ** 0.5


def step_distance(morph: Morph, j: int, k: int) -> float:
    """How far grid steps `j` and `k` lie apart, in steps."""
    if morph.cc2 is None:
        return abs(j - k)
    return distance(morph, j, k % morph.steps, k // morph.steps)


def step_key(morph: Morph, step: int, base: NoteKey) -> NoteKey:
    """The note of grid `step` at `base`'s pitch and velocity."""
    return NoteKey(step_blends(morph)[step], base.pitch, base.velocity)


def start_step(morph: Morph, controls) -> int:
    """The step a note-on starts from with the channel's controllers at `controls`
    (indexed by controller number): the nearest one."""
    x, y = where(morph, controls)
    return int(round(x)) + (0 if y is None else int(round(y)) * morph.steps)


def start_key(morph: Morph, base: NoteKey, controls) -> NoteKey:
    """The note of `start_step`."""
    return step_key(morph, start_step(morph, controls), base)


def prewarm_steps(morph: Morph) -> List[int]:
    """Grid steps to prewarm: a share `prewarm` of the grid spread evenly, plus every
    instrument's own step (in 2-D: that per axis, with share sqrt(prewarm), corners in)."""
    last = morph.steps - 1
    share = morph.prewarm if morph.cc2 is None else morph.prewarm ** 0.5
    count = int(round(share * morph.steps))
    chosen = {int(round(i * last / (count - 1))) for i in range(count)} if count > 1 else set()
    if count == 1:
        chosen.add(0)
    segments = len(morph.instruments) - 1 if morph.cc2 is None else 1
    chosen |= {int(round(i * last / segments)) for i in range(segments + 1)}
    if morph.cc2 is not None:
        chosen = {j * morph.steps + i for i in chosen for j in chosen}
    return sorted(chosen)


_RAMPS: Dict[tuple, np.ndarray] = {}


def glide_ramp(done: int, n: int, glide: int) -> np.ndarray:
    """The glide's next `n` progress values (done + 1 .. done + n) / glide, capped at 1:
    float32 (n,), shared read-only by every voice that moved on the same sample (a chord
    under the wheel), so the audio thread computes it once per block, not per voice."""
    key = (done, n, glide)
    ramp = _RAMPS.get(key)
    if ramp is None:
        if len(_RAMPS) > 64:
            _RAMPS.clear()
        ramp = _RAMP32[:n] + np.float32(done + 1)
        ramp *= np.float32(1.0 / glide)
        np.minimum(ramp, np.float32(1.0), out=ramp)
        _RAMPS[key] = ramp
    return ramp


def weights_at(x: float) -> tuple:
    """Linear weights of the (one or two) steps around grid position `x` (0 .. steps - 1):
    ((step, weight), ...)."""
    lo = int(x)
    return ((lo, 1.0),) if x == lo else ((lo, lo + 1 - x), (lo + 1, x - lo))


class MorphVoice(Voice):
    """A voice whose timbre follows a controller across a `Morph` grid.

    Args:
        morph: the patch's `Morph`.
        base: the note-on's key (its pitch and velocity are the steps').
        fetch: callable(list of NoteKey) -> list of Note: the synth's cached, streaming or
            newly requested notes for the keys (offline: rendered now, in one batch).
        controls: the channel's controller values at note-on (indexed by controller).
        glide: samples the weights take to follow a controller move.
        live: True when playing live: a move requests the steps it needs and (1-D) the
            next one in the direction of travel. False offline, where steps are rendered on
            the spot: in 1-D the first move needing a missing step renders all the grid's
            missing steps in one batch (a model makes a batch of 16 notes far faster than
            16 single ones).
        The rest as `Voice`: channel, pitch, amp, release (samples), rate, order.

    The voice's own `note` (the step nearest the position at note-on) may still be
    streaming and paces playback as in `Voice`; other steps join only once whole. All steps
    are read at the same position, so they stay aligned from the note-on, through the
    sustain loop (every note has the same length, hence the same loop) and the release.
    """

    __slots__ = ("morph", "base", "fetch", "glide", "live", "grid", "parts",
                 "glide_done", "x", "y", "want", "waiting", "block")

    def __init__(self, morph: Morph, base: NoteKey, fetch: Callable[[List[NoteKey]], List[Note]],
                 controls, glide: int, channel: int, pitch: int, amp: float, release: int,
                 rate: float = 1.0, order: int = 0, live: bool = True):
        self.morph = morph
        self.base = base
        self.fetch = fetch
        self.glide = max(1, int(glide))
        self.live = live
        self.grid: List[Optional[Note]] = [None] * grid_size(morph)
        self.x, self.y = where(morph, controls)
        self.want = ((0, 1.0),)
        first = start_step(morph, controls)
        self.grid[first] = fetch([step_key(morph, first, base)])[0]
        super().__init__(self.grid[first], channel, pitch, amp, release, rate, order)
        self.parts: List[list] = [[first, 1.0, 1.0]]  # [step, weight from, weight to]
        self.glide_done = self.glide  # no glide running
        self.waiting = ()  # wanted steps not whole yet
        self.block = 0
        self.move_to(controls, instant=True)

    # ---- controller (audio thread, at the event's sample) -------------------------------
    def move_to(self, controls, instant: bool = False) -> None:
        """Follow the channel's controllers (`controls`, indexed by controller number) from
        the next sample the voice plays (the synth applies events at their sample): request
        the steps needed, glide there."""
        morph = self.morph
        x, y = where(morph, controls)
        want = grid_weights(morph, x, y)
        grid = self.grid
        needed = [k for k, _ in want]
        if y is not None:
            pass  # 2-D: only the steps around the position (a whole grid is 64-256 notes)
        elif self.live:
            ahead = needed[-1] + 1 if x >= self.x else needed[0] - 1
            if 0 <= ahead < morph.steps:
                needed.append(ahead)
        elif not instant and any(grid[k] is None for k in needed):
            needed = range(morph.steps)  # the wheel moves: make the rest of the grid now
        self.x, self.y = x, y
        missing = [k for k in needed if grid[k] is None]
        if missing:
            notes = self.fetch([step_key(morph, k, self.base) for k in missing])
            for k, note in zip(missing, notes):
                grid[k] = note
        self.want = want
        self._retarget(instant)

    def _ready(self, k: int) -> bool:
        note = self.grid[k]
        if note is None:
            return False
        return note is self.note or note.state == DONE

    def _target(self) -> tuple:
        """((step, weight), ...) to glide to: the position's, or the nearest ready step's."""
        want = self.want
        self.waiting = tuple(k for k, _ in want if not self._ready(k))
        if not self.waiting:
            return want
        near = min((distance(self.morph, k, self.x, self.y), k) for k in range(len(self.grid))
                   if self._ready(k))
        return ((near[1], 1.0),)

    def _retarget(self, instant: bool = False) -> None:
        target = self._target()
        parts = self.parts
        if instant:
            self.parts = [[k, w, w] for k, w in target]
            self.glide_done = self.glide
            return
        if len(parts) == len(target) and all(p[0] == k and p[2] == w
                                             for p, (k, w) in zip(parts, target)):
            return  # already heading there: the running glide goes on
        g = self.glide_done / self.glide
        now = {}
        for k, a, b in parts:
            w = a + (b - a) * g if g < 1.0 else b
            if w > 0.0:
                now[k] = w
        # A wheel moving faster than the glide would keep every step it passed with a
        # dwindling weight: hand weights under FADED to the nearest step kept (its
        # neighbour on the grid, nearly the same sound), so a voice mixes 2-4 steps.
        to = dict(target)
        keep = sorted(set(to).union(k for k, w in now.items() if w >= FADED))
        start = dict.fromkeys(keep, 0.0)
        for k, w in now.items():
            if k not in start:
                k = min(keep, key=lambda j: step_distance(self.morph, j, k))
            start[k] += w
        self.parts = [[k, start[k], to.get(k, 0.0)] for k in keep]
        self.glide_done = 0

    # ---- rendering ------------------------------------------------------------------------
    def read(self, n: int):
        """As `Voice.read`, the crossfaded steps in place of the one note."""
        if self.waiting and any(self._ready(k) for k in self.waiting):
            self._retarget()  # a wanted step arrived
        self.block = n
        return Voice.read(self, n)

    def _span(self, a: int, m: int, data: np.ndarray, avail: int, done: bool) -> np.ndarray:
        parts = self.parts
        gliding = self.glide_done < self.glide
        if not gliding and len(parts) == 1 and parts[0][2] == 1.0 and \
                self.grid[parts[0][0]] is self.note:
            return Voice._span(self, a, m, data, avail, done)
        if gliding:
            # Sample i of the block (span index frac + rate * i) is the glide's sample
            # glide_done + i + 1: map the span's indices back to block samples.
            frac = self.pos - int(self.pos)
            if frac == 0.0 and self.rate == 1.0:
                g = glide_ramp(self.glide_done, m, self.glide)
            else:
                g = (np.arange(m, dtype=np.float64) - frac) * (1.0 / self.rate)
                g += self.glide_done + 1
                g *= 1.0 / self.glide
                g = np.clip(g, 0.0, 1.0).astype(np.float32)
            if len(parts) == 2:  # the usual case: weights a, 1 - a (one product fewer)
                (k0, a0, a1), (k1, _, _) = parts
                first, second = self._part_span(k0, a, m, data, avail, done), \
                    self._part_span(k1, a, m, data, avail, done)
                w = g * np.float32(a1 - a0)
                w += np.float32(a0)
                out = first - second
                out *= w
                out += second
                self._glided()
                return out
        out = None
        for k, w0, w1 in parts:
            if w0 == 0.0 and w1 == 0.0:
                continue
            note = self.grid[k]
            span = (Voice._span(self, a, m, data, avail, done) if note is self.note
                    else self._other_span(note, a, m))
            if gliding and w0 != w1:
                w = g * np.float32(w1 - w0)
                w += np.float32(w0)
                w *= span
            else:
                w = span * np.float32(w1)
            if out is None:
                out = w
            else:
                out += w
        if gliding:
            self._glided()
        return out

    def _glided(self) -> None:
        """Count the block's samples into the glide; drop the steps it has faded out."""
        self.glide_done += self.block
        if self.glide_done >= self.glide:
            self.parts = [p for p in self.parts if p[2] > 0.0]

    def _part_span(self, k: int, a: int, m: int, data, avail: int, done: bool) -> np.ndarray:
        note = self.grid[k]
        if note is self.note:
            return Voice._span(self, a, m, data, avail, done)
        return self._other_span(note, a, m)

    def _other_span(self, note: Note, a: int, m: int) -> np.ndarray:
        """Samples a .. a+m of a whole step note, as `Voice._span` reads the voice's own
        (through its sustain loop when the voice loops); zeros where it has none."""
        if self.looping and note.loop_end:
            xs = note.xfade_start
            if a >= xs:
                got = note.tail[a - xs:a - xs + m]
            elif a + m <= xs:
                got = note.data[a:a + m]
            else:
                got = np.concatenate((note.data[a:xs], note.tail[:a + m - xs]))
        else:
            got = note.data[a:min(a + m, note.length)] if a < note.length else note.data[:0]
        if len(got) == m:
            return got
        # Streamed notes may differ in length by a few samples: pad what is missing.
        out = np.zeros(m, np.float32)
        out[:len(got)] = got
        return out
