"""The state of one MIDI channel and what its controllers do to it (audio thread only)."""
from __future__ import annotations

import math
from typing import Optional

from singsynth.engine.mixer import pan_gains
from singsynth.presets import Patch

# What a controller change asks of the channel's voices (see `Channel.control`).
SUSTAIN_UP = "sustain up"
SOUND_OFF = "sound off"
NOTES_OFF = "notes off"
RESET = "reset"
BEND = "bend"


class Channel:
    """Program, patch and controllers of one MIDI channel."""

    __slots__ = ("program", "patch", "volume", "expression", "pan", "sustain", "bend",
                 "bend_range", "rpn", "rpn_cents", "controls")

    def __init__(self, patch: Patch):
        self.program = 0
        self.patch = patch
        self.volume = 100       # CC7, General MIDI's default
        self.expression = 127   # CC11
        self.pan: Optional[float] = None  # CC10 as -1..1; None: the patch's pan
        self.sustain = False    # CC64
        self.bend = 0           # -8192..8191
        self.bend_range = 2.0   # semitones, set by RPN 0
        self.rpn = (127, 127)   # (MSB, LSB); (127, 127) is "none selected"
        self.rpn_cents = 0
        self.controls = bytearray(128)  # last value of every controller (a morph reads its own)

    @property
    def rate(self) -> float:
        """Playback rate for the current pitch bend."""
        return 2.0 ** (self.bend / 8192.0 * self.bend_range / 12.0)

    def gains(self) -> tuple:
        """(left, right) linear gains: volume and expression (squared, as GM), then pan."""
        level = (self.volume / 127.0) ** 2 * (self.expression / 127.0) ** 2
        left, right = pan_gains(self.patch.pan if self.pan is None else self.pan)
        return level * left, level * right

    def control(self, cc: int, value: int) -> Optional[str]:
        """Apply controller `cc` = `value`; returns what the voices must do, or None.

        Handled: 7 volume, 11 expression, 10 pan, 64 sustain, 120 all sound off,
        121 reset all controllers (RP-015: not volume, not pan), 123 all notes off,
        RPN 0 pitch bend sensitivity (101/100 select, 6/38 data entry), 98/99 NRPN
        (deselects RPN). Every value is kept in `controls` (a morph patch's controller).
        """
        self.controls[cc & 127] = value & 127
        if cc == 7:
            self.volume = value
        elif cc == 11:
            self.expression = value
        elif cc == 10:
            self.pan = min(max((value - 64) / 63.0, -1.0), 1.0)
        elif cc == 64:
            down = value >= 64
            up = self.sustain and not down
            self.sustain = down
            return SUSTAIN_UP if up else None
        elif cc == 120:
            return SOUND_OFF
        elif cc == 123:
            return NOTES_OFF
        elif cc == 121:
            self.expression, self.bend, self.rpn, self.sustain = 127, 0, (127, 127), False
            self.controls[1] = 0  # the mod wheel, as RP-015 asks
            return RESET
        elif cc == 101:
            self.rpn = (value, self.rpn[1])
        elif cc == 100:
            self.rpn = (self.rpn[0], value)
        elif cc in (98, 99):  # an NRPN is selected: data entry no longer means RPN 0
            self.rpn = (127, 127)
        elif cc == 6 and self.rpn == (0, 0):
            self.bend_range = value + self.rpn_cents / 100.0
            return BEND
        elif cc == 38 and self.rpn == (0, 0):
            self.rpn_cents = value
            self.bend_range = math.floor(self.bend_range) + value / 100.0
            return BEND
        return None
