"""Watch the machine's CPUs stall: a real-time sleeper that notes each time it wakes late.

`python -m tests.stall_monitor [CPU]` sleeps 1 ms at a time under SCHED_FIFO 20 (above
jackd's driver at 10, so no program on this machine can keep it from its CPU), pinned to
CPU when given, and, on SIGTERM, prints the stalls as JSON: [[time.monotonic() when the
sleep began, milliseconds], ...]. A wake-up more than 3 ms late means that CPU was taken
from this machine (a virtual CPU whose host ran something else): an xrun then tells
nothing about the program under test. On this 2-vCPU VM, about half the stalls are of one
vCPU only, so `jack_fixtures.StallMonitor` runs one sleeper pinned to each CPU. Without
the privilege it runs at normal priority, and then also notes ordinary busy moments.
"""
import json
import os
import signal
import sys
import time

SLEEP = 0.001   # seconds per sleep
LATE = 0.003    # seconds beyond SLEEP that count as a stall


def main(argv):
    if argv:
        os.sched_setaffinity(0, {int(argv[0])})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except (AttributeError, OSError):
        pass
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    print("ready", flush=True)
    stalls = []
    before = time.monotonic()
    while not stopped:
        time.sleep(SLEEP)
        now = time.monotonic()
        if now - before > SLEEP + LATE:
            stalls.append([before, round(1000 * (now - before), 2)])
        before = now
    json.dump(stalls, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
