"""MIDI input ports (python-rtmidi, named as mido backends): the only module opening them.

No Python runs on the MIDI driver's thread. python-rtmidi queues each incoming message in
C++ with its delta time, and the audio callback drains that queue at the start of every
block (`MidiInput.read`). A Python callback would have to take the GIL inside the driver's
thread, and under JACK that thread is a real-time client of its own: a GIL wait there
costs an xrun (measured, benchmarks/README.md). The delta times keep each message's
arrival moment, so events keep their spacing to the sample (`EventScheduler`).

The main thread calls `MidiInput.check()` about once a second: when the port disappears
(keyboard unplugged, JACK client gone) sound keeps going and the port is reopened as soon
as it comes back.
"""
from __future__ import annotations

import os

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


def parse(data):
    """A mido.Message from raw MIDI bytes; None for what the synth ignores or cannot read."""
    try:
        msg = mido.Message.from_bytes(data)
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None if msg.type in IGNORED else msg


class MidiInput:
    """One MIDI input port, read by the audio callback.

    Args:
        port: substring of the input port name; ignored when `virtual`.
        virtual: open a virtual input named `virtual_name` for other programs to connect to.
        api: `--midi-api` key or None (MIDO_BACKEND, else mido's default rtmidi API).
    """

    def __init__(self, *, port=None, virtual=False, api=None, virtual_name="singsynth"):
        if not virtual and not port:
            raise DeviceError("give --port NAME (see `singsynth ports`) or --virtual")
        self.backend = get_backend(api)
        if self.backend.name != DEFAULT_BACKEND:
            raise DeviceError(f"singsynth play reads MIDI through python-rtmidi, not "
                              f"{backend_label(self.backend)}; set MIDO_BACKEND to "
                              f"{DEFAULT_BACKEND}[/API] or use --midi-api")
        import rtmidi
        self._rtmidi = rtmidi
        self._api = getattr(rtmidi, f"API_{self.backend.api}", rtmidi.API_UNSPECIFIED)
        self.pattern = port
        self.virtual = virtual
        self.virtual_name = virtual_name
        self.name = None     # the port currently open (or last open)
        self._port = None    # the open rtmidi.MidiIn; read by the audio thread
        self._lister = None
        self._last = None    # stream-clock time (s) of the last message read
        self._prev = None    # stream-clock time (s) of the previous `read`
        self._reads = 0      # `read` calls finished (see _close_port)
        self._retired = []   # (closed port, _reads when closed), deleted by a later check

    # ---- the audio thread ------------------------------------------------------------
    def read(self, now, on_message):
        """Audio thread: hand on every message that arrived since the previous call.

        Each goes to `on_message(stamp, msg)` with `stamp` its arrival on the stream clock:
        the previous message's stamp plus rtmidi's delta time, kept inside the window it
        must lie in (after the previous `read`, not after `now`). Inside a burst that is
        the spacing the player gave; the window absorbs any drift between rtmidi's clock
        and the sound card's. The first message of a port has no previous one and is put
        at the window's start, so the burst it begins keeps its spacing too.

        Args:
            now: stream-clock time (s) of the block about to be computed.
            on_message: `f(stamp, mido.Message)`.
        """
        start = now if self._prev is None else self._prev
        self._prev = now
        port = self._port  # one read: the main thread may swap it meanwhile
        if port is not None:
            self._drain(port, start, now, on_message)
        self._reads += 1

    def _drain(self, port, start, now, on_message):
        last = self._last
        while True:
            item = port.get_message()
            if item is None:
                break
            data, delta = item
            stamp = start if last is None else min(max(last + delta, start), now)
            last = stamp
            msg = parse(data)
            if msg is not None:
                on_message(stamp, msg)
        self._last = last

    # ---- the main thread -------------------------------------------------------------
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
            try:
                self._lister = self._rtmidi.MidiIn(rtapi=self._api, name="singsynth-ports")
            except Exception:  # noqa: BLE001 - rtmidi raises several types; mido's below
                self._lister = False
        if self._lister:
            try:
                return list(self._lister.get_ports())
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"cannot list MIDI inputs: {exc}") from None
        return input_names(self.backend)

    def _open_rtmidi(self, name=None):
        """A new rtmidi.MidiIn on port `name`, or on our virtual port when `name` is None.

        The queue holds what arrives between two audio blocks; 1024 messages is seconds
        of the densest playing, where rtmidi's default of 100 could drop a chord storm.
        """
        port = self._rtmidi.MidiIn(rtapi=self._api, name=VIRTUAL_CLIENT, queue_size_limit=1024)
        try:
            port.ignore_types(sysex=True, timing=True, active_sense=True)
            if name is None:
                port.open_virtual_port(self.virtual_name)
            else:
                port.open_port(port.get_ports().index(name), name=self.virtual_name)
        except BaseException:
            port.delete()
            raise
        return port

    def open(self):
        """Open the port; DeviceError if it does not exist or cannot be opened."""
        if self.virtual:
            try:
                port = self._open_rtmidi()
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"cannot open a virtual MIDI port with "
                                  f"{backend_label(self.backend)} ({exc}); this MIDI API may "
                                  "not support virtual ports") from None
            self.name = self.resolve()
        else:
            self.name = self.resolve()
            try:
                port = self._open_rtmidi(self.name)
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"cannot open MIDI input {self.name!r}: {exc}") from None
        self._last = None
        self._port = port
        return self.name

    @property
    def connected(self):
        return self._port is not None

    def check(self):
        """Main thread, about once a second: follow the port going away and coming back.

        Returns a one-line message when something changed, else None.
        """
        self._delete_retired()
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
            port = self._open_rtmidi(name)
        except Exception:  # noqa: BLE001 - not back yet; try again at the next check
            return None
        self.name, self._last, self._port = name, None, port
        return f"MIDI input {name!r} reconnected"

    def _close_port(self):
        """Take the port from the audio thread and close it; its client goes later.

        The audio thread may be inside `read` with the old object. Reading a closed port is
        safe (its queue lives as long as the object), reading a deleted one is not, so the
        object is deleted only once a `read` has finished since (`_delete_retired`).
        Dropping it is not enough: python-rtmidi keeps the client, which would stay in the
        JACK graph (measured) and take the next port's name.
        """
        port, self._port = self._port, None
        try:
            port.close_port()
        except Exception:  # noqa: BLE001 - the device is gone; closing is best effort
            pass
        self._retired.append((port, self._reads))

    def _delete_retired(self, stream_stopped=False):
        keep = []
        for port, reads in self._retired:
            if stream_stopped or self._reads != reads:
                port.delete()
            else:
                keep.append((port, reads))
        self._retired = keep

    def close(self):
        """Close the port and its client; call after the audio stream has stopped."""
        if self._port is not None:
            self._close_port()
        self._delete_retired(stream_stopped=True)
        if self._lister:
            self._lister.delete()
            self._lister = None
