"""Write `examples/demo.mid`: Beethoven's "Ode to Joy" (public domain), entered by hand.

About 45 seconds, format 1, General MIDI: a flute melody that turns into a trumpet for
the last verse (program change mid-song), a string pad, a piano arpeggio held with the
sustain pedal, a fingered bass, drums on channel 10, a pitch bend into the last note,
and a ritardando (a tempo change every beat) at the end.

    python examples/make_demo_midi.py            # -> examples/demo.mid
    python examples/make_demo_midi.py out.mid
"""
import os
import sys

import mido

TPB = 480  # ticks per quarter note
BAR = 4 * TPB
C4 = 60
NOTE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# The tune in C major, one string per bar: pitch[octave shift]/beats.
PHRASE_A = ["E/1 E/1 F/1 G/1", "G/1 F/1 E/1 D/1", "C/1 C/1 D/1 E/1"]
ENDING_1 = "E/1.5 D/0.5 D/2"
ENDING_2 = "D/1.5 C/0.5 C/2"
PHRASE_B = ["D/1 D/1 E/1 C/1", "D/1 E/0.5 F/0.5 E/1 C/1", "D/1 E/0.5 F/0.5 E/1 D/1",
            "C/1 D/1 G-/2"]
VERSE = PHRASE_A + [ENDING_1] + PHRASE_A + [ENDING_2] + PHRASE_B + PHRASE_A + [ENDING_2]
# One chord per half bar, as (root name, quality), matching VERSE bar by bar.
CHORDS_A = ["C C", "G G", "C C", "G G"]
CHORDS_A2 = ["C C", "G G", "C C", "G C"]
CHORDS_B = ["G G", "C C", "G G", "C G"]
HARMONY = CHORDS_A + CHORDS_A2 + CHORDS_B + CHORDS_A2
MAJOR = (0, 4, 7)


def parse_bar(bar):
    """'E/1 G-/2' -> [(midi pitch, beats)]; '-' or '+' shifts an octave."""
    notes = []
    for item in bar.split():
        name, beats = item.split("/")
        shift = -12 * name.count("-") + 12 * name.count("+")
        notes.append((C4 + NOTE[name[0]] + shift, float(beats)))
    return notes


class Track:
    """Absolute-tick events, turned into a mido track with delta times at the end."""

    def __init__(self, name, channel=0, program=None):
        self.name, self.channel, self.events = name, channel, []
        if program is not None:
            self.add(0, "program_change", program=program)

    def add(self, tick, kind, **fields):
        if kind.startswith("set_tempo") or kind == "time_signature":
            self.events.append((tick, mido.MetaMessage(kind, **fields)))
        else:
            self.events.append((tick, mido.Message(kind, channel=self.channel, **fields)))

    def note(self, tick, pitch, ticks, velocity, legato=0.9):
        self.add(tick, "note_on", note=pitch, velocity=velocity)
        self.add(tick + int(ticks * legato), "note_off", note=pitch, velocity=0)

    def to_mido(self):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=self.name)])
        now = 0
        # note_off before note_on at the same tick, so a repeated note is re-struck.
        for tick, msg in sorted(self.events, key=lambda e: (e[0], e[1].type != "note_off")):
            track.append(msg.copy(time=tick - now))
            now = tick
        return track


def build():
    intro, verse_bars, coda_from = 2, len(VERSE), len(VERSE) - 4
    # Played: intro, the whole verse, then its last four bars again as a trumpet coda.
    bars = list(range(verse_bars)) + list(range(coda_from, verse_bars))
    total_bars = intro + len(bars)
    end = total_bars * BAR

    conductor = Track("conductor")
    conductor.add(0, "time_signature", numerator=4, denominator=4)
    conductor.add(0, "set_tempo", tempo=mido.bpm2tempo(112))
    # Ritardando over the coda's last two bars: 112 -> 70 BPM, one step per beat.
    slow_from = (total_bars - 2) * BAR
    for beat in range(8):
        bpm = 112 - (112 - 70) * (beat + 1) / 8
        conductor.add(slow_from + beat * TPB, "set_tempo", tempo=mido.bpm2tempo(bpm))

    melody = Track("melody", channel=0, program=73)          # flute
    pad = Track("strings", channel=1, program=48)            # string ensemble
    piano = Track("piano", channel=2, program=0)             # acoustic grand
    bass = Track("bass", channel=3, program=33)              # fingered bass
    drums = Track("drums", channel=9)                        # GM percussion
    coda_tick = (intro + verse_bars) * BAR
    melody.add(coda_tick, "program_change", program=56)      # trumpet for the coda

    for i, bar in enumerate(bars):
        start = (intro + i) * BAR
        tick, loud = start, 100 if i >= verse_bars else 84
        notes = parse_bar(VERSE[bar])
        for j, (pitch, beats) in enumerate(notes):
            last = i == len(bars) - 1 and j == len(notes) - 1
            if last:  # slide up a whole step into the final note
                melody.add(tick, "pitchwheel", pitch=-4096)
                for k in range(1, 9):
                    melody.add(tick + k * TPB // 16, "pitchwheel", pitch=-4096 + k * 512)
            melody.note(tick, pitch + 12, int(beats * TPB), loud + (8 if j == 0 else 0),
                        legato=1.0 if last else 0.9)
            tick += int(beats * TPB)

    for i in range(-intro, len(bars)):
        start = (intro + i) * BAR
        halves = HARMONY[bars[i] if i >= 0 else 0].split()
        for h, root_name in enumerate(halves):
            t = start + h * 2 * TPB
            root = C4 + NOTE[root_name] - (12 if root_name == "G" else 0)
            for step in MAJOR:
                pad.note(t, root + step, 2 * TPB, 60, legato=1.0)
            # Piano: broken chord in eighths under the pedal (pedal changes with the harmony).
            piano.add(t, "control_change", control=64, value=0)
            piano.add(t + 10, "control_change", control=64, value=127)
            for k, step in enumerate((0, 7, 12, 16)):
                piano.note(t + k * TPB // 2, root - 12 + step, TPB // 2, 58, legato=0.5)
            bass.note(t, root - 24, TPB, 96, legato=0.8)
            bass.note(t + TPB, root - 24 + (7 if h == 0 else 12), TPB, 80, legato=0.8)
        for beat in range(4):
            t = start + beat * TPB
            drums.note(t, 42, TPB // 2, 70 if beat % 2 else 85, legato=0.25)          # hi-hat
            drums.note(t + TPB // 2, 42, TPB // 2, 55, legato=0.25)
            drums.note(t, 36 if beat % 2 == 0 else 38, TPB, 100, legato=0.25)        # kick/snare
    piano.add(end - 20, "control_change", control=64, value=0)
    # The final chord rings a whole bar past the last beat.
    for pitch in (48, 55, 60, 64, 67):
        pad.note(end, pitch, BAR, 70, legato=1.0)
    drums.note(end, 49, TPB, 100, legato=0.25)                                     # crash
    bass.note(end, 36, BAR, 100, legato=1.0)

    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    for track in (conductor, melody, pad, piano, bass, drums):
        mid.tracks.append(track.to_mido())
    return mid


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.mid")
    mid = build()
    mid.save(path)
    print(f"wrote {path}: {mid.length:.1f} s, {len(mid.tracks)} tracks")


if __name__ == "__main__":
    main()
