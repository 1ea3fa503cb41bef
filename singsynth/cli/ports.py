"""`singsynth ports`: list MIDI inputs and audio outputs, marking the defaults (*)."""
import argparse
import json

from singsynth.errors import DeviceError


def get_parser():
    parser = argparse.ArgumentParser(prog="singsynth ports", description=__doc__)
    from singsynth.hosts.midi_in import MIDI_APIS
    parser.add_argument("--midi-api", choices=sorted(MIDI_APIS),
                        help="MIDI system (default: $MIDO_BACKEND, else the platform's own)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of text, for scripts: "
                             '{"midi": {"api", "inputs", "default", "error"}, "audio": '
                             '{"outputs": [{index, name, hostapi, default_samplerate, channels, '
                             'default}], "error"}}')
    return parser


def midi_ports(api=None) -> dict:
    """The MIDI inputs of `api`: {"api": backend label, "inputs": [names], "default":
    mido's default (the first) or None, "error": None or the line saying why there are none}."""
    from singsynth.hosts.midi_in import backend_label, get_backend, input_names
    label = None
    try:
        backend = get_backend(api)
        label = backend_label(backend)
        names = input_names(backend)
    except DeviceError as exc:
        return {"api": label, "inputs": [], "default": None, "error": str(exc)}
    return {"api": label, "inputs": names, "default": names[0] if names else None, "error": None}


def audio_ports() -> dict:
    """{"outputs": [output device dicts, see io.audio.output_devices], "error": None or why}."""
    from singsynth.hosts.audio import output_devices
    try:
        return {"outputs": output_devices(), "error": None}
    except DeviceError as exc:
        return {"outputs": [], "error": str(exc)}


def midi_lines(api=None):
    """Lines describing the MIDI inputs of `api`; the first port is mido's default."""
    ports = midi_ports(api)
    if ports["error"]:
        return [f"MIDI inputs: unavailable: {ports['error']}"]
    names = ports["inputs"]
    lines = [f"MIDI inputs ({ports['api']}):"]
    lines += [f"  {'*' if i == 0 else ' '} {name}" for i, name in enumerate(names)]
    if not names:
        lines.append("    none (connect a keyboard, or use `singsynth play --virtual`)")
    return lines


def audio_lines():
    """Lines describing the audio output devices, with host API and default rate."""
    ports = audio_ports()
    if ports["error"]:
        return [f"audio outputs: unavailable: {ports['error']}"]
    devices = ports["outputs"]
    lines = ["audio outputs (index, name, host API, default rate, channels):"]
    lines += [f"  {'*' if d['default'] else ' '} {d['index']:>2}  {d['name']}  [{d['hostapi']}]  "
              f"{d['default_samplerate']:.0f} Hz  {d['channels']} ch" for d in devices]
    if not devices:
        lines.append("    none")
    return lines


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.json:
        print(json.dumps({"midi": midi_ports(args.midi_api), "audio": audio_ports()}))
        return 0
    print("\n".join(midi_lines(args.midi_api) + [""] + audio_lines()))
    print("\n* = default. Pick with `singsynth play --port NAME --device INDEX|NAME`.")
    return 0
