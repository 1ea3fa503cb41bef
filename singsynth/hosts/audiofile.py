"""The audio file a render writes: format checks, the final gain stage, and an atomic write.

`AudioFile` reserves a temporary file beside the output before any rendering (so a bad
output path is refused at once), and renames it into place only when the audio is whole;
an error or Ctrl-C on the way leaves nothing behind, not even the folders it made.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from singsynth.errors import SingsynthError
from singsynth.files import (finishing, make_public, os_error_line, printable, same_file, shown,
                             write_sound)

FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}  # by the output's extension
BITS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}  # --bits -> soundfile subtype
DEFAULT_BITS = "24"
NORMALIZE_PEAK = 10 ** (-1 / 20)  # -1 dBFS leaves room for inter-sample peaks in players


def finish(audio: np.ndarray, *, channels: int = 2, normalize: bool = False,
           gain_db: float = 0.0, warn: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Mono downmix, optional peak normalisation, then `gain_db` (dB, after normalising)
    -> float32 (samples, channels) in [-1, 1]. Samples a positive gain pushes past full
    scale are clipped, and `warn` is told how many."""
    if channels == 1:
        audio = audio.mean(axis=1, keepdims=True, dtype=np.float32)
    if normalize:
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * np.float32(NORMALIZE_PEAK / peak)
    if gain_db:
        audio = audio * np.float32(10 ** (gain_db / 20))
        over = int(np.count_nonzero(np.abs(audio) > 1.0))
        if over and warn is not None:
            peak = 20 * np.log10(float(np.max(np.abs(audio))))
            warn(f"--gain {gain_db:+g} dB clipped {over} samples (peak {peak:+.1f} dBFS before "
                 "clipping); lower --gain")
    # The engine's limiter keeps the bus in range; the clip only guards the integer file format.
    return np.clip(audio, -1.0, 1.0, out=audio)


def output_format(path, bits: Optional[str] = None) -> tuple:
    """(soundfile format, subtype) for a .wav, .flac or .ogg path and `--bits` (16, 24 or
    32f; None: 24, or Vorbis for .ogg); one SingsynthError line for anything else."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise SingsynthError(f"cannot write {path}: unknown audio format {ext or '(none)'!r}; "
                             "name the output .wav, .flac or .ogg")
    fmt = FORMATS[ext]
    if fmt == "OGG":
        if bits is not None:
            raise SingsynthError(f"--bits {bits} does not apply to {path}: Ogg Vorbis is lossy "
                                 "and has no bit depth; leave out --bits or write .wav or .flac")
        return fmt, "VORBIS"
    bits = DEFAULT_BITS if bits is None else str(bits)
    if bits not in BITS:
        raise SingsynthError(f"--bits {bits} is not supported; use 16, 24 or 32f (float)")
    if fmt == "FLAC" and bits == "32f":
        raise SingsynthError(f"cannot write {path} with --bits 32f: FLAC stores integer "
                             "samples only; use --bits 16 or 24, or a .wav file for float")
    return fmt, BITS[bits]


def missing_folders(folder: Path) -> list:
    """The folders that do not exist yet on the way to `folder`, deepest first."""
    missing = []
    folder = folder.absolute()
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def open_output(path, overwrite: bool, inputs=()) -> str:
    """Check that `path` may be written and reserve a temporary file beside it -> its path.

    Raises SingsynthError (before any rendering) for an unknown extension, the path of
    one of `inputs` (the song, the model, the preset: -f replaces only what singsynth
    made), an existing file without `overwrite`, a directory, a name too long, or a
    folder that cannot be made or written.
    """
    path = Path(path)
    output_format(path)
    try:
        exists, is_dir = os.path.lexists(path), path.is_dir()
    except OSError as exc:
        raise SingsynthError(os_error_line(path, exc, "write")) from None
    for other in inputs:
        if exists and other is not None and same_file(path, other):
            raise SingsynthError(f"-o {shown(path)} is the input file {shown(other)}; choose "
                                 "another output name (-f never replaces an input)")
    if is_dir:
        raise SingsynthError(f"{shown(path)} is a directory; give an output file name")
    if exists and not overwrite:
        raise SingsynthError(f"{shown(path)} already exists; pass -f to overwrite it")
    try:
        # A missing folder is made (as `make demo` needs for out/); a file in the way is not.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        line = os_error_line(path, exc, "write")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM):
            line = (f"cannot write {shown(path)}: {exc.strerror or exc}; check that the folder "
                    "exists and is writable")
        raise SingsynthError(line) from None
    os.close(fd)
    return tmp


def write_audio(tmp: str, path, audio: np.ndarray, sample_rate: int, done=None,
                bits: Optional[str] = None) -> None:
    """Write `audio` (samples, channels) to `tmp` and rename it to `path` (atomic).

    `done()` runs once the rename has happened, with Ctrl-C held back (see
    `files.finishing`): the CLI passes one that makes a late Ctrl-C harmless.
    """
    fmt, subtype = output_format(path, bits)
    try:
        try:  # write_sound names a full disk (libsndfile says only "System error")
            write_sound(tmp, audio, sample_rate, format=fmt, subtype=subtype)
        except RuntimeError as exc:  # LibsndfileError: not an OSError
            raise SingsynthError(f"cannot write {shown(path)}: {printable(exc)}") from None
        make_public(tmp)
        with finishing(done):
            os.replace(tmp, path)
    except OSError as exc:
        raise SingsynthError(os_error_line(path, exc, "write")) from None


class AudioFile:
    """An output audio file, written atomically; use it as a context manager.

        with AudioFile("out/song.wav", bits="16") as out:  # refused here if it cannot be
            audio = ...                                    # written: nothing rendered yet
            out.write(audio, 48000)                        # a temporary file, renamed

    Entering checks the path (`output_format`, `open_output`) and reserves the temporary
    file; leaving removes it, and, unless `write` completed, the folders made for it.

    Args:
        path: the .wav, .flac or .ogg file to write.
        overwrite: replace an existing file (never one of `inputs`).
        inputs: paths the output must not be (the song, the model, the preset); None ignored.
        bits: "16", "24" or "32f" (see `output_format`); None: 24-bit, or Vorbis for .ogg.
    """

    def __init__(self, path, overwrite: bool = False, inputs=(), bits: Optional[str] = None):
        self.path, self.overwrite, self.inputs, self.bits = path, overwrite, inputs, bits
        self.tmp: Optional[str] = None
        self.made: list = []
        self.written = False

    def __enter__(self) -> "AudioFile":
        output_format(self.path, self.bits)  # a bad --bits for this format: refused now
        self.made = missing_folders(Path(self.path).parent)
        try:
            self.tmp = open_output(self.path, self.overwrite, self.inputs)
        except BaseException:
            self._remove_folders()  # mkdir may have made some before mkstemp failed
            raise
        return self

    def write(self, audio: np.ndarray, sample_rate: int, done=None) -> None:
        """Write float32 `audio` (samples, channels) at `sample_rate` Hz and rename it into
        place; `done()` runs right after the rename, with Ctrl-C held back."""
        write_audio(self.tmp, self.path, audio, sample_rate, done, self.bits)
        self.written = True

    def __exit__(self, *exc) -> None:
        Path(self.tmp).unlink(missing_ok=True)
        if not self.written:
            self._remove_folders()

    def _remove_folders(self) -> None:
        for folder in self.made:  # deepest first; one that is not empty stays
            with contextlib.suppress(OSError):
                folder.rmdir()
