"""Small helpers for files written atomically (a temporary file, then a rename)."""
from __future__ import annotations

import os


def make_public(path) -> None:
    """Give `path` the permissions any new file gets here (0666 less the umask).

    `tempfile.mkstemp` creates files readable by their owner only; a checkpoint or a
    rendered song renamed from one would otherwise stay private.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
