"""Hosts: what drives the engine, as library objects, and the devices and files they use.

- `live`: `LivePlayer`, live play from a MIDI input to an audio device;
- `render`: offline render of a MIDI file (`OfflineRender`: plan, prepare, mix, write);
- `audiofile`: the rendered file's format checks and atomic write;
- `midifile`: MIDI files -> timed engine events;
- `audio`, `midi_in`, `record`, `timing`, `cpu_awake`: the audio-out, MIDI-in and
  recording adapters. Only `audio` imports sounddevice and only `midi_in` opens MIDI
  ports, so `render` and `train` run on machines without either.
"""
