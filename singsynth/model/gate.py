"""The end of a note: exact silence once its sound has died away.

A SoundFont voice ends when its sample and envelope do, so a FluidR3 drum hit is digital
silence a few hundred ms after the note-on. SING's decoder never quite gets there: after
the hit its grains leave a floor of noise at -65 to -75 dBFS for the rest of the 4-second
note. Inaudible in a mix, but it is what a log-spectral comparison of a short hit mostly
sees (benchmarks/timbre.py, models/default.md), and a cached note's tail is mixed for
nothing. `TailGate` ends a note the way a synth voice ends: once a note that has sounded
(a 10 ms frame at `OPEN_DB` or louder) falls under `CLOSE_DB`, it fades out over one
frame and stays silent.

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
        start = 0
        while start < chunk.shape[1]:
            offset = self.pos % self.frame
            end = min(chunk.shape[1], start + self.frame - offset)
            # The frame's gain was decided when the previous frame ended.
            if self.silent.any():
                out[self.silent, start:end] = 0
            fading = self.closed & ~self.silent
            if fading.any():
                out[fading, start:end] *= self.fade[offset:offset + end - start].to(out.dtype)
            self.energy += chunk[:, start:end].double().square().sum(1)
            self.pos += end - start
            if self.pos % self.frame == 0:
                self._frame_done()
            start = end
        return out

    def _frame_done(self):
        """Decide the next frame's gain from the frame just finished."""
        level = 10 * torch.log10(self.energy / self.frame + 1e-30)
        self.silent |= self.closed                  # a frame that faded: silence from now
        self.loud |= level >= OPEN_DB
        self.closed |= self.loud & (level < CLOSE_DB) & self.active
        self.energy.zero_()
