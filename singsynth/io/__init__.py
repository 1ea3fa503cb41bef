"""Devices: sound card output and MIDI input ports.

The only package importing sounddevice (`audio`) or opening MIDI ports (`midi_in`); import
the submodules directly so that `render` and `train` run on machines without either.
"""
