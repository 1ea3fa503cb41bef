"""Keep the CPUs out of sleep states while playing (Linux PM QoS, `/dev/cpu_dma_latency`).

An idle CPU halts, and waking it for the next audio block takes time: microseconds from a
laptop's deep C-states, milliseconds on a virtual machine, whose host hands a halted
vCPU's core to other work and gives it back late. Writing 0 to `/dev/cpu_dma_latency`
and keeping the file open asks the kernel to poll instead of halting for as long as it
stays open; closing it (or the process ending) withdraws the request. Measured on this
project's 2-vCPU VM (benchmarks/README.md, ninth session), alternating in one sitting: in
a busy hour 7-15 xruns in a 30 s storm with the request held against 38-183 without; in a
quiet hour no difference (24 and 8 against 13 and 15 in 60 s storms).

The cost is power: idle CPUs spin while `play` runs. It needs write access to the device
(root, or a udev rule giving the `audio` group that access); without it nothing happens.
"""
from __future__ import annotations

import os
import struct

PATH = "/dev/cpu_dma_latency"


class CpuAwake:
    """Hold a PM QoS request for 0 µs wake-up latency until `close()`.

    `held` tells whether the kernel took the request (Linux, with access to `path`).
    """

    def __init__(self, path: str = PATH):
        self.fd = None
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            return
        try:
            os.write(fd, struct.pack("i", 0))  # the kernel reads a native s32, in µs
        except OSError:
            os.close(fd)
            return
        self.fd = fd

    @property
    def held(self) -> bool:
        return self.fd is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def current(path: str = PATH):
    """The wake-up latency (µs) the kernel now allows idle CPUs, or None if unreadable."""
    try:
        with open(path, "rb") as f:
            return struct.unpack("i", f.read(4))[0]
    except (OSError, struct.error):
        return None
