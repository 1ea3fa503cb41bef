"""Sound card output through PortAudio (sounddevice): the only module importing sounddevice.

`AudioOutput` opens an output stream at the device's own sample rate (PortAudio does not
resample; the engine does) and pulls every block from a `process(frames) -> (frames, 2)`
function, FluidSynth-driver style. The callback follows sounddevice's rule: nothing that
allocates much, touches a file or may block. It dispatches the MIDI events due in this
block (`before_block`), calls `process`, copies into the device buffer, counts PortAudio's
underflow flags and hands a copy to the `Recorder` through a preallocated ring.
"""
from __future__ import annotations

import atexit
import ctypes
import threading
import time

import sounddevice as sd

from singsynth.errors import DeviceError
from singsynth.hosts.record import Recorder

LATENCIES = ("low", "high")
STOP_TIMEOUT = 2.0  # seconds to wait for PortAudio to stop a stream
_jack_name = None  # see set_jack_client_name


def output_devices():
    """Output devices as dicts: index, name, hostapi (name), default_samplerate, default."""
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = sd.default.device[1]
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    return [
        dict(index=i, name=d["name"], hostapi=hostapis[d["hostapi"]]["name"],
             default_samplerate=d["default_samplerate"], channels=d["max_output_channels"],
             default=(i == default))
        for i, d in enumerate(devices) if d["max_output_channels"] > 0
    ]


def find_device(spec=None):
    """The output device for `--device`: None (default), an index, or a name substring.

    Raises DeviceError listing the output devices when none or several match.
    """
    devices = output_devices()
    choices = "; ".join(f"{d['index']}: {d['name']} ({d['hostapi']})" for d in devices)
    if not devices:
        raise DeviceError("no audio output device found; is a sound server or card available?")
    if spec is None:
        for d in devices:
            if d["default"]:
                return d
        return devices[0]
    if str(spec).strip().isdigit():
        for d in devices:
            if d["index"] == int(spec):
                return d
        raise DeviceError(f"no audio output device {spec}; choose one of: {choices}")
    needle = str(spec).lower()
    hits = [d for d in devices if needle in f"{d['name']} ({d['hostapi']})".lower()]
    if not hits:
        raise DeviceError(f"no audio output device matches {spec!r}; choose with --device: "
                          f"{choices}")
    if len(hits) > 1:
        raise DeviceError(f"audio device {spec!r} matches {len(hits)} devices; be more "
                          "specific: " + "; ".join(f"{d['index']}: {d['name']}" for d in hits))
    return hits[0]


def check_device(device, sample_rate, channels=2):
    """DeviceError unless `device` plays `channels` of float32 at `sample_rate` Hz
    (checked without opening a stream, so before the slow model load)."""
    try:
        sd.check_output_settings(device=device["index"], channels=channels, dtype="float32",
                                 samplerate=sample_rate)
    except (sd.PortAudioError, ValueError) as exc:
        raise DeviceError(f"cannot open audio device {device['name']!r} at {sample_rate} Hz: "
                          f"{exc}; leave out --sample-rate to use the device's own "
                          f"({device['default_samplerate']:g} Hz)") from None


def parse_latency(text):
    """`--latency`: 'low', 'high' or a number of seconds."""
    if text in LATENCIES:
        return text
    try:
        seconds = float(text)
    except ValueError:
        raise DeviceError(f"--latency {text!r}: use low, high or seconds (e.g. 0.01)") from None
    if not 0 < seconds < 2:
        raise DeviceError(f"--latency {text}: seconds must be between 0 and 2")
    return seconds


def set_jack_client_name(name):
    """Name PortAudio's JACK client (`name:out_0`, ...) instead of `PortAudio`.

    PortAudio reads the name when it initialises, so sounddevice's PortAudio is restarted.
    Harmless where PortAudio was built without JACK.
    """
    global _jack_name
    try:
        lib = ctypes.CDLL(sd._libname)
        # PortAudio keeps the pointer, not a copy: the buffer must outlive the stream.
        _jack_name = ctypes.create_string_buffer(name.encode())
        lib.PaJack_SetClientName(_jack_name)
    except (OSError, AttributeError):
        return
    sd._terminate()
    sd._initialize()


class AudioOutput:
    """A running output stream that pulls audio from `process`.

    Args:
        process: `process(frames) -> float32 (frames, channels)`; audio thread only.
        device: a dict from `find_device`.
        sample_rate: Hz; None = the device's default rate.
        blocksize: frames per callback (0 lets the host choose, as JACK does anyway).
        latency: 'low', 'high' or seconds.
        before_block: optional `f(block_time, frames)` called first in each callback, with
            the stream-clock time (seconds) at which the block is computed; it dispatches
            the MIDI events due in the block.
        recorder_path: if given, a `Recorder` writes exactly what goes to the device there.
    """

    def __init__(self, process, device, *, sample_rate=None, blocksize=256, latency="low",
                 channels=2, before_block=None, recorder_path=None):
        self.device = device
        self.sample_rate = int(sample_rate or device["default_samplerate"])
        self.channels = channels
        self.blocksize = blocksize
        self._process = process
        self._before_block = before_block
        self.xruns = 0
        self.blocks = 0
        self.load = 0.0         # smoothed callback time / block duration
        self.peak_load = 0.0
        self.error = None
        self._closing = False
        check_device(device, self.sample_rate, channels)
        try:
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate, blocksize=blocksize, device=device["index"],
                channels=channels, dtype="float32", latency=latency, callback=self._callback,
                finished_callback=self._finished)
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(f"cannot open audio device {device['name']!r} at "
                              f"{self.sample_rate} Hz: {exc}") from None
        self.recorder = None
        if recorder_path is not None:
            self.recorder = Recorder(recorder_path, self.sample_rate, channels)

    def _callback(self, outdata, frames, info, status):
        """Audio thread only: dispatch due events, pull one block, copy it out."""
        start = time.perf_counter()
        if status.output_underflow:
            self.xruns += 1
        if self._before_block is not None:
            # currentTime is 0 on host APIs that do not implement it; fall back to the clock.
            self._before_block(info.currentTime or self._stream.time, frames)
        try:
            outdata[:] = self._process(frames)
        except Exception as exc:  # noqa: BLE001 - reported once by the main thread
            outdata.fill(0)
            self.error = f"the synth failed in the audio callback: {exc!r}"
            raise sd.CallbackAbort from None
        if self.recorder is not None:
            self.recorder.push(outdata)
        self.blocks += 1
        load = (time.perf_counter() - start) * self.sample_rate / frames
        self.load += 0.05 * (load - self.load)
        if load > self.peak_load:
            self.peak_load = load

    def _finished(self):
        if not self._closing:
            self.error = "the audio stream stopped (device unplugged or the server went away)"

    def time(self):
        """The stream's clock in seconds (the same clock the callback's times use)."""
        return self._stream.time

    @property
    def latency(self):
        """Output latency PortAudio reports, in seconds."""
        return self._stream.latency

    @property
    def active(self):
        return self._stream.active

    def start(self):
        if self.recorder is not None:
            self.recorder.start()
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot start audio device {self.device['name']!r}: {exc}") from None

    def close(self, keep=True):
        """Stop the stream, then finalise the recording (so it holds every block sent).

        With `keep=False` (a failed start) an empty recording is removed instead. If the
        device is gone (a dead JACK server), PortAudio's stop waits forever for a callback
        that never comes: it is given `STOP_TIMEOUT` seconds, then abandoned (and so is
        PortAudio's clean-up at exit, which would wait the same way).
        """
        self._closing = True
        stopper = threading.Thread(target=self._stop_stream, daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT)
        if stopper.is_alive():
            atexit.unregister(sd._exit_handler)
        if self.recorder is not None:
            if keep or self.recorder.pending_frames():
                self.recorder.close()
            else:
                self.recorder.discard()

    def _stop_stream(self):
        try:
            self._stream.stop()
            self._stream.close()
        except sd.PortAudioError:
            pass  # the device may be gone already; the recording still gets finalised
