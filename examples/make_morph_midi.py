"""Write `examples/morph.mid`: a held chord whose timbre the mod wheel sweeps (issue 24).

About 16 seconds on channel 1, for `presets/morph.yaml` (flute at wheel 0, overdrive guitar
at 127): a C major chord is struck with the wheel down and held while the wheel sweeps up
over 4 s, back down over 4 s, then half way; then a short phrase whose notes start at
whatever timbre the wheel is at, while the wheel moves under them.

    python examples/make_morph_midi.py            # -> examples/morph.mid
    python examples/make_morph_midi.py out.mid
    make morph-demo                                # renders it to out/morph.wav
"""
import os
import sys

import mido

TPB = 480          # ticks per quarter note
BPM = 60           # one beat a second, so ticks read as time
SECOND = TPB
CC_MOD = 1


def wheel(events, start, stop, frm, to):
    """A mod-wheel sweep from value `frm` to `to` between ticks `start` and `stop`: one
    message per value, as a real wheel sends."""
    n = abs(to - frm)
    for i in range(n + 1):
        tick = start + (stop - start) * i // max(n, 1)
        value = frm + (i if to >= frm else -i)
        events.append((tick, mido.Message("control_change", channel=0, control=CC_MOD, value=value)))


def build():
    events = [(0, mido.Message("control_change", channel=0, control=CC_MOD, value=0))]
    chord = (48, 55, 60, 64)
    for pitch in chord:  # struck at 0.5 s, held 10 s
        events.append((SECOND // 2, mido.Message("note_on", channel=0, note=pitch, velocity=90)))
        events.append((21 * SECOND // 2, mido.Message("note_off", channel=0, note=pitch)))
    wheel(events, 1 * SECOND, 5 * SECOND, 0, 127)       # flute -> guitar
    wheel(events, 5 * SECOND + SECOND // 2, 9 * SECOND + SECOND // 2, 127, 0)  # and back
    wheel(events, 9 * SECOND + SECOND // 2, 10 * SECOND, 0, 64)  # half way
    # A phrase: each note starts where the wheel is and keeps following it.
    phrase = [(67, 11.0), (69, 11.5), (71, 12.0), (72, 12.5), (74, 13.0), (72, 13.5), (67, 14.0)]
    for pitch, at in phrase:
        t = int(at * SECOND)
        events.append((t, mido.Message("note_on", channel=0, note=pitch, velocity=100)))
        events.append((t + 2 * SECOND // 5, mido.Message("note_off", channel=0, note=pitch)))
    wheel(events, 10 * SECOND + SECOND // 2, 12 * SECOND + SECOND // 2, 64, 127)
    wheel(events, 12 * SECOND + SECOND // 2, 14 * SECOND + SECOND // 2, 127, 0)
    events.append((16 * SECOND, mido.Message("control_change", channel=0, control=CC_MOD, value=0)))

    track = mido.MidiTrack([mido.MetaMessage("track_name", name="morph"),
                            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM))])
    now = 0
    # note_off before note_on at the same tick; controller changes before notes.
    order = {"note_off": 0, "control_change": 1, "note_on": 2}
    for tick, msg in sorted(events, key=lambda e: (e[0], order[e[1].type])):
        track.append(msg.copy(time=tick - now))
        now = tick
    mid = mido.MidiFile(type=0, ticks_per_beat=TPB)
    mid.tracks.append(track)
    return mid


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "morph.mid")
    mid = build()
    mid.save(path)
    print(f"wrote {path}: {mid.length:.1f} s, {len(mid.tracks)} track")


if __name__ == "__main__":
    main()
