"""Small helpers for files: permissions of files written atomically (a temporary file,
then a rename), and where singsynth's caches live."""
from __future__ import annotations

import os
from pathlib import Path


def make_public(path) -> None:
    """Give `path` the permissions any new file gets here (0666 less the umask).

    `tempfile.mkstemp` creates files readable by their owner only; a checkpoint or a
    rendered song renamed from one would otherwise stay private.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def cache_dir(variable: str, name: str) -> Path:
    """`$variable`, else `$XDG_CACHE_HOME/singsynth/<name>`, else `~/.cache/singsynth/<name>`."""
    if os.environ.get(variable):
        return Path(os.environ[variable])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "singsynth" / name
