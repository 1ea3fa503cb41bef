"""MIDI input ports (mido over python-rtmidi): the only module opening MIDI ports.

The port callback runs on the MIDI driver's thread; it only stamps each message with the
audio stream's clock and hands it on (to an `EventScheduler`), so events keep their timing
to the sample. The main thread calls `MidiInput.check()` about once a second: when the port
disappears (keyboard unplugged, JACK client gone) sound keeps going and the port is
reopened as soon as it comes back.
"""
from __future__ import annotations

import os
import time

import mido

from singsynth.errors import DeviceError

# `--midi-api` -> mido backend. Without the option mido's own default applies, and with it
# the MIDO_BACKEND environment variable (e.g. mido.backends.rtmidi/UNIX_JACK).
MIDI_APIS = {
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "coremidi": "mido.backends.rtmidi/MACOSX_CORE",
    "windows_mm": "mido.backends.rtmidi/WINDOWS_MM",
}
DEFAULT_BACKEND = "mido.backends.rtmidi"

# Messages the synth has no use for; dropping them here keeps the queue short.
IGNORED = frozenset({"clock", "active_sensing", "start", "stop", "continue", "songpos",
                     "song_select", "tune_request", "quarter_frame", "sysex"})

VIRTUAL_CLIENT = "singsynth-midi"


def get_backend(api=None):
    """The mido backend for `--midi-api` (None: MIDO_BACKEND or mido's default)."""
    name = MIDI_APIS[api] if api else os.environ.get("MIDO_BACKEND") or DEFAULT_BACKEND
    try:
        return mido.Backend(name, load=True)
    except (ImportError, ValueError, OSError) as exc:
        raise DeviceError(f"MIDI backend {name} is not available ({exc}); "
                          f"choose --midi-api from {', '.join(MIDI_APIS)}") from None


def backend_label(backend):
    """'mido.backends.rtmidi/UNIX_JACK' style name of a backend (module/API)."""
    return f"{backend.name}/{backend.api}" if backend.api else backend.name


def input_names(backend):
    """Names of the MIDI input ports `backend` can open."""
    try:
        return list(backend.get_input_names())
    except Exception as exc:  # noqa: BLE001 - rtmidi raises several types when an API is absent
        raise DeviceError(f"cannot list MIDI inputs with {backend_label(backend)} ({exc}); "
                          f"try another --midi-api ({', '.join(MIDI_APIS)})") from None


def match_port(pattern, names):
    """The one name in `names` containing `pattern` (case-insensitive); exact names win.

    Raises DeviceError listing `names` when none or several match.
    """
    if pattern in names:
        return pattern
    hits = [n for n in names if pattern.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    listed = "; ".join(repr(n) for n in names) or "none (use --virtual to open one)"
    if not hits:
        raise DeviceError(f"no MIDI input matches {pattern!r}; available: {listed}")
    raise DeviceError(f"MIDI input {pattern!r} matches {len(hits)} ports; be more specific: "
                      + "; ".join(repr(n) for n in hits))


class MidiInput:
    """An open MIDI input that forwards each message as `on_message(timestamp, msg)`.

    Args:
        on_message: called on the MIDI thread with (clock() seconds, mido.Message).
        port: substring of the input port name; ignored when `virtual`.
        virtual: open a virtual input named `virtual_name` for other programs to connect to.
        api: `--midi-api` key or None.
        clock: the audio stream's clock (`AudioOutput.time`), so stamps and blocks agree.
    """

    def __init__(self, on_message, *, port=None, virtual=False, api=None, clock=time.monotonic,
                 virtual_name="singsynth"):
        if not virtual and not port:
            raise DeviceError("give --port NAME (see `singsynth ports`) or --virtual")
        self._on_message = on_message
        self._clock = clock
        self.backend = get_backend(api)
        self.pattern = port
        self.virtual = virtual
        self.virtual_name = virtual_name
        self.name = None     # the port currently open (or last open)
        self._port = None
        self._lister = None
        self.received = 0

    def connect_to(self, on_message, clock):
        """Set where messages go and the clock that stamps them (before `open`)."""
        self._on_message = on_message
        self._clock = clock

    def _callback(self, msg):
        """MIDI thread: stamp and forward; nothing else."""
        if msg.type in IGNORED:
            return
        self.received += 1
        self._on_message(self._clock(), msg)

    def resolve(self):
        """The port name `open` will use; DeviceError (listing the inputs) if none matches."""
        if self.virtual:
            return f"{VIRTUAL_CLIENT}:{self.virtual_name}"
        return match_port(self.pattern, self._names())

    def _names(self):
        """Input names from one long-lived rtmidi client.

        mido's get_input_names() creates a new client per call; under JACK each one joins
        and leaves the graph, which cost an xrun every second of polling when measured.
        The lister is made by the first call (`resolve`, before the stream starts).
        """
        if self._lister is None:
            self._lister = False
            if self.backend.name == DEFAULT_BACKEND:
                import rtmidi
                api = getattr(rtmidi, f"API_{self.backend.api}", rtmidi.API_UNSPECIFIED)
                try:
                    self._lister = rtmidi.MidiIn(rtapi=api, name="singsynth-ports")
                except Exception:  # noqa: BLE001 - fall back to mido's listing below
                    self._lister = False
        if self._lister:
            try:
                return list(self._lister.get_ports())
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"cannot list MIDI inputs: {exc}") from None
        return input_names(self.backend)

    def open(self):
        """Open the port; DeviceError if it does not exist or cannot be opened."""
        if self.virtual:
            try:
                self._port = self.backend.open_input(self.virtual_name, virtual=True,
                                                     client_name=VIRTUAL_CLIENT,
                                                     callback=self._callback)
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"cannot open a virtual MIDI port with "
                                  f"{backend_label(self.backend)} ({exc}); this MIDI API may "
                                  "not support virtual ports") from None
            self.name = self.resolve()
            return self.name
        name = self.resolve()
        try:
            self._port = self.backend.open_input(name, callback=self._callback)
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"cannot open MIDI input {name!r}: {exc}") from None
        self.name = name
        return name

    @property
    def connected(self):
        return self._port is not None

    def check(self):
        """Main thread, about once a second: follow the port going away and coming back.

        Returns a one-line message when something changed, else None.
        """
        if self.virtual:
            return None
        try:
            names = self._names()
        except DeviceError:
            return None
        if self._port is not None:
            if self.name in names:
                return None
            self._close_port()
            return f"MIDI input {self.name!r} disappeared; sound continues, waiting for it"
        if self.name in names:
            name = self.name
        else:
            hits = [n for n in names if self.pattern.lower() in n.lower()]
            if len(hits) != 1:
                return None
            name = hits[0]
        try:
            self._port = self.backend.open_input(name, callback=self._callback)
        except Exception:  # noqa: BLE001 - not back yet; try again at the next check
            return None
        self.name = name
        return f"MIDI input {name!r} reconnected"

    def _close_port(self):
        port, self._port = self._port, None
        try:
            port.close()
        except Exception:  # noqa: BLE001 - the device is gone; closing is best effort
            pass

    def close(self):
        if self._port is not None:
            self._close_port()
        if self._lister:
            self._lister.delete()
            self._lister = None
