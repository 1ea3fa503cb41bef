"""Watch the machine itself stall: a real-time sleeper that notes each time it wakes late.

`python -m tests.stall_monitor` sleeps 1 ms at a time under SCHED_FIFO 20 (above jackd's
driver at 10, so no program on this machine can keep it from its CPU) and, on SIGTERM,
prints the stalls as JSON: [[time.monotonic() when the sleep began, milliseconds], ...].
A wake-up more than 3 ms late means every CPU was taken from this machine (a virtual one
whose host is busy): an xrun then tells nothing about the program under test. Without the
privilege it runs at normal priority, and then also notes ordinary busy moments.
"""
import json
import os
import signal
import sys
import time

SLEEP = 0.001   # seconds per sleep
LATE = 0.003    # seconds beyond SLEEP that count as a stall


def main():
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
    main()
