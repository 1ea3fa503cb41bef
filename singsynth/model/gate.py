"""The end of a note: exact silence once its sound has died away.

A SoundFont voice ends when its sample and envelope do, so a FluidR3 drum hit is digital
silence a few hundred ms after the note-on. SING's decoder never quite gets there: after
the hit its grains leave a floor of noise at -65 to -75 dBFS for the rest of the 4-second
note. Inaudible in a mix, but it is what a log-spectral comparison of a short hit mostly
sees (benchmarks/timbre.py, models/default.md), and a cached note's tail is mixed for
nothing. `TailGate` ends a note the way a synth voice ends: once a note that has sounded
(a 10 ms frame at `OPEN_DB` or louder) falls under `CLOSE_DB`, it fades out over one
frame and stays silent. `SING` gates the notes of drum kits only (`SING.tail_gate`): a
melodic note's quiet tail still carries its pitch.

The gate is causal and decided per frame from earlier frames only, so a note streamed in
chunks of any size gets the same gains as the whole note (`SING.generate` and
`SING.stream` both apply it).
"""
from __future__ import annotations

import torch

FRAME_SECONDS = 0.01
CLOSE_DB = -70.0   # frame RMS, dBFS, under which a note that has sounded ends
OPEN_DB = -50.0    # the note must first reach this, so a quiet note is never cut


class TailGate:
    """Gains for consecutive (B, n) chunks of a batch of notes at `rate` Hz.

    Frame k (of `FRAME_SECONDS`) plays at gain 1 until the frame after the first one,
    past a frame at `OPEN_DB` or louder, whose RMS is under `CLOSE_DB`: that frame fades
    linearly to 0 and every later frame is 0. `active` (B,) bool chooses the notes gated
    (None: all).
    """

    def __init__(self, batch: int, rate: int, device=None, active: torch.Tensor | None = None):
        self.frame = max(1, round(rate * FRAME_SECONDS))
        self.pos = 0                                   # samples seen so far
        self.energy = torch.zeros(batch, dtype=torch.float64, device=device)   # this frame's
        self.loud = torch.zeros(batch, dtype=torch.bool, device=device)
        self.closed = torch.zeros(batch, dtype=torch.bool, device=device)   # fading or silent
        self.silent = torch.zeros(batch, dtype=torch.bool, device=device)
        self.active = (torch.ones(batch, dtype=torch.bool, device=device) if active is None
                       else active.to(device=device, dtype=torch.bool))
        self.fade = 1 - torch.arange(1, self.frame + 1, device=device) / self.frame   # (frame,)

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """The chunk (B, n) with the gate's gains applied (a new tensor)."""
        out = chunk.clone()
        start, n = 0, chunk.shape[1]
        while start < n:
            offset = self.pos % self.frame
            whole = (n - start) // self.frame if offset == 0 else 0
            if whole >= 2:      # a whole note: its frames at once, not one Python step each
                end = start + whole * self.frame
                self._frames(chunk[:, start:end], out[:, start:end])
            else:
                end = min(n, start + self.frame - offset)
                self._part(chunk[:, start:end], out[:, start:end], offset)
            start = end
        return out

    def _part(self, x: torch.Tensor, out: torch.Tensor, offset: int):
        """Samples `offset`.. of the current frame: gains as decided, energy summed."""
        if self.silent.any():
            out[self.silent] = 0
        fading = self.closed & ~self.silent
        if fading.any():
            out[fading] *= self.fade[offset:offset + x.shape[1]].to(out.dtype)
        self.energy += x.double().square().sum(1)
        self.pos += x.shape[1]
        if self.pos % self.frame == 0:
            self._frame_done()

    def _frame_done(self):
        """Decide the next frame's gain from the frame just finished."""
        level = 10 * torch.log10(self.energy / self.frame + 1e-30)
        self.silent |= self.closed                  # a frame that faded: silence from now
        self.loud |= level >= OPEN_DB
        self.closed |= self.loud & (level < CLOSE_DB) & self.active
        self.energy.zero_()

    def _frames(self, x: torch.Tensor, out: torch.Tensor):
        """F >= 2 whole frames (B, F * frame) from a frame boundary: the same decisions as
        F calls of `_part`, as cumulative ORs over the frames."""
        b, frames = x.shape[0], x.shape[1] // self.frame
        energy = x.double().square().reshape(b, frames, self.frame).sum(-1)
        level = 10 * torch.log10(energy / self.frame + 1e-30)             # (B, F)
        loud = (self.loud[:, None] | (level >= OPEN_DB)).cummax(1).values
        ends = loud & (level < CLOSE_DB) & self.active[:, None]
        closed = (self.closed[:, None] | ends).cummax(1).values          # after frame j
        # Before frame j: closed if it was after frame j - 1; silent if it was closed after
        # frame j - 2 (the frame between faded), or silent from the start.
        closed_before = torch.cat([self.closed[:, None], closed[:, :-1]], 1)
        never = torch.zeros_like(self.closed)[:, None]
        silent_before = self.silent[:, None] | torch.cat(
            [never, self.closed[:, None], closed[:, :-2]], 1)
        gain = torch.ones(b, frames, self.frame, dtype=out.dtype, device=out.device)
        gain[closed_before & ~silent_before] = self.fade.to(out.dtype)
        gain[silent_before] = 0
        out.mul_(gain.reshape(b, -1))
        self.silent = self.silent | closed_before[:, -1]
        self.loud, self.closed = loud[:, -1].clone(), closed[:, -1].clone()
        self.pos += x.shape[1]
