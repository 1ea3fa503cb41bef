"""Note generation, between the engine and the model: no torch here.

- `source`: the `NoteSource` protocol a generator plays from (a model, a sine in tests);
- `note`: `Note`, a note at the output rate that a generator writes and voices read;
- `thread` / `process`: the two `NoteGenerator`s, in a thread of the audio process or in
  child processes (live play);
- `resample`: the streaming resampler a played note goes through;
- `diskcache`: `DiskCachedSource`, a source wrapper that keeps notes on disk;
- `testing`: deterministic sources for exact-sample tests.
"""
