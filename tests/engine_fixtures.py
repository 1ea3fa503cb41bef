"""Helpers shared by the engine tests: drive a `Synth` as an audio callback would."""
import time


def pump(synth, until, limit=20.0, block=256):
    """Call `synth.process(block)` paced at real time until `until(block_out)` is true.

    Returns the blocks played, the last one included; AssertionError after `limit` seconds.
    """
    start, blocks = time.monotonic(), []
    for i in range(int(limit * synth.sample_rate / block)):
        out = synth.process(block)
        blocks.append(out)
        if until(out):
            return blocks
        time.sleep(max(0.0, start + (i + 1) * block / synth.sample_rate - time.monotonic()))
    raise AssertionError("condition never reached")


def wait_until(condition, timeout=5.0, poll=0.001):
    """Poll `condition()` (no blocks played) until true or `timeout` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while not (ok := condition()) and time.monotonic() < deadline:
        time.sleep(poll)
    return ok
