"""`singsynth ports`: list MIDI inputs and audio outputs, marking the defaults (*)."""
import argparse

from singsynth.errors import DeviceError


def get_parser():
    parser = argparse.ArgumentParser(prog="singsynth ports", description=__doc__)
    from singsynth.io.midi_in import MIDI_APIS
    parser.add_argument("--midi-api", choices=sorted(MIDI_APIS),
                        help="MIDI system (default: $MIDO_BACKEND, else the platform's own)")
    return parser


def midi_lines(api=None):
    """Lines describing the MIDI inputs of `api`; the first port is mido's default."""
    from singsynth.io.midi_in import backend_label, get_backend, input_names
    try:
        backend = get_backend(api)
        names = input_names(backend)
    except DeviceError as exc:
        return [f"MIDI inputs: unavailable: {exc}"]
    lines = [f"MIDI inputs ({backend_label(backend)}):"]
    lines += [f"  {'*' if i == 0 else ' '} {name}" for i, name in enumerate(names)]
    if not names:
        lines.append("    none (connect a keyboard, or use `singsynth play --virtual`)")
    return lines


def audio_lines():
    """Lines describing the audio output devices, with host API and default rate."""
    from singsynth.io.audio import output_devices
    try:
        devices = output_devices()
    except DeviceError as exc:
        return [f"audio outputs: unavailable: {exc}"]
    lines = ["audio outputs (index, name, host API, default rate, channels):"]
    lines += [f"  {'*' if d['default'] else ' '} {d['index']:>2}  {d['name']}  [{d['hostapi']}]  "
              f"{d['default_samplerate']:.0f} Hz  {d['channels']} ch" for d in devices]
    if not devices:
        lines.append("    none")
    return lines


def main(argv=None):
    args = get_parser().parse_args(argv)
    print("\n".join(midi_lines(args.midi_api) + [""] + audio_lines()))
    print("\n* = default. Pick with `singsynth play --port NAME --device INDEX|NAME`.")
    return 0
