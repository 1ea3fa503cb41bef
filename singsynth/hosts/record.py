"""Record what goes to the sound card without doing file I/O in the audio callback.

The audio thread copies each block into a preallocated ring and advances a counter; a
writer thread drains the ring into a sound file. Nothing is locked: the audio thread only
writes frames the writer has released and the writer only reads frames the audio thread has
published (each counter has one writer). The file is written under a temporary name and
renamed when closed, so an interrupted session leaves either a playable file or none.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from singsynth.errors import DeviceError
from singsynth.files import KeepWriteError, make_public, os_error_line, printable, shown

# Extension -> (libsndfile format, subtype). WAV keeps float32 exactly as sent.
FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}


def record_format(path: Path) -> tuple:
    """(libsndfile format, subtype) for `path`'s extension; DeviceError if unknown."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DeviceError(f"--record {path}: unknown extension; use one of {', '.join(FORMATS)}")
    return fmt


def check_record_path(path, overwrite: bool) -> None:
    """DeviceError, before anything starts, unless a recording can be written to `path`."""
    path = Path(path)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a name too long, a folder that cannot be entered
        raise DeviceError(f"--record: {os_error_line(path, exc, 'write', '--record')}") from None
    if path.is_dir():
        raise DeviceError(f"--record {path} is a folder; give a file name such as take1.wav")
    record_format(path)
    if path.exists() and not overwrite:
        raise DeviceError(f"--record {path} exists; add -f to overwrite it")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise DeviceError(f"--record {path}: cannot write in {folder}; check that the folder "
                          "exists and is writable")


class Recorder:
    """Write every block pushed from the audio thread to `path`.

    Args:
        path: output file; .wav (float32, bit-exact), .flac or .ogg.
        sample_rate: Hz, the device rate.
        channels: columns of each block.
        seconds: ring capacity; if the writer falls this far behind, blocks are dropped
            (counted in `dropped`) rather than blocking the audio thread.
    """

    def __init__(self, path, sample_rate, channels=2, seconds=10.0):
        self.path = Path(path)
        fmt = record_format(self.path)
        self._raw = None
        try:
            # A fresh name (O_EXCL), never a fixed ".take.wav.part" that a planted link
            # could point elsewhere.
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name[:100]}.", suffix=".part",
                                       dir=self.path.parent)
            self._tmp = Path(tmp)
            self._raw = os.fdopen(fd, "r+b", buffering=0)
            # Through KeepWriteError: libsndfile reports a full disk only as "System
            # error"; the OSError it keeps names it.
            self._sink = KeepWriteError(self._raw)
            self._file = sf.SoundFile(self._sink, "w", samplerate=int(sample_rate),
                                      channels=channels, format=fmt[0], subtype=fmt[1])
        except (sf.LibsndfileError, OSError) as exc:
            if self._raw is not None:
                self._raw.close()
                self._tmp.unlink(missing_ok=True)
            raise DeviceError(f"--record {shown(path)}: cannot write there "
                              f"({printable(exc)})") from None
        self._ring = np.zeros((int(seconds * sample_rate), channels), np.float32)
        # Fault every page in here, not on the audio thread's first pass through the ring
        # (numpy may back a big array with 2 MiB transparent huge pages, each zeroed on its
        # first write: a missed block).
        self._ring.fill(0.0)
        self._written = 0   # frames published by the audio thread
        self._read = 0      # frames consumed by the writer
        self.dropped = 0    # frames lost because the writer fell behind
        self.error = None   # why writing failed (disk full...), once it has
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="singsynth-recorder", daemon=True)

    def start(self):
        self._thread.start()

    def push(self, block):
        """Audio thread only: copy `block` (frames, channels) into the ring; never blocks."""
        frames = len(block)
        cap = len(self._ring)
        if cap - (self._written - self._read) < frames:
            self.dropped += frames
            return
        pos = self._written % cap
        first = min(frames, cap - pos)
        self._ring[pos:pos + first] = block[:first]
        if first < frames:
            self._ring[:frames - first] = block[first:]
        self._written += frames  # publish only after the copy

    def _drain(self):
        cap = len(self._ring)
        while self._read < self._written:
            pos = self._read % cap
            n = min(self._written - self._read, cap - pos)
            self._file.write(self._ring[pos:pos + n])
            self._read += n

    def _run(self):
        try:
            while not self._stop.wait(0.05):
                self._drain()
        except (sf.LibsndfileError, OSError, RuntimeError, AssertionError) as exc:
            # Disk full, say: the sound goes on, `play` says so, `close` reports it.
            self.error = self._why(exc)

    @property
    def frames(self):
        """Frames written to the file so far."""
        return self._read

    def pending_frames(self):
        """Frames pushed so far (written or about to be)."""
        return self._written

    def close(self):
        """Call after the stream stopped: write what is left, close, rename into place.

        DeviceError if the file could not be written (the partial file is removed: a
        recording that lost its middle is not the take that was played)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            if self.error is None:
                self._drain()
                self._file.close()
                if self._sink.error is not None:
                    raise self._sink.error
                self._raw.close()
                make_public(self._tmp)
                os.replace(self._tmp, self.path)
                return
        except (sf.LibsndfileError, OSError, RuntimeError, AssertionError) as exc:
            self.error = self._why(exc)
        self.discard()
        raise DeviceError(f"--record: {self.error}; nothing was saved")

    def _why(self, exc) -> str:
        """The line for a failed write: the OSError behind it when there is one."""
        err = self._sink.error if self._sink.error is not None else exc
        if isinstance(err, OSError):
            return os_error_line(self.path, err, "write", option="--record")
        return f"cannot write {shown(self.path)} ({printable(err)})"

    def discard(self):
        """Abandon the recording and remove the temporary file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self._file.close()
        except (sf.LibsndfileError, OSError, RuntimeError, AssertionError):
            pass  # a full disk cannot take the header either; the file goes anyway
        self._raw.close()
        self._tmp.unlink(missing_ok=True)
