"""Small helpers for files: permissions of files written atomically (a temporary file,
then a rename), where singsynth's caches live, and what a model or preset name means."""
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


PACKAGE = Path(__file__).resolve().parent
SHIPPED = ("models", "presets", "configs")


def shipped_dir(kind: str) -> Path:
    """The folder of the files singsynth ships of one `kind`: "models", "presets" or "configs".

    A wheel (`pip install .`) carries them inside the package, as `singsynth/shipped/<kind>`
    (setup.py maps the checkout's top-level folders there); a source checkout (an editable
    install, the tests) keeps them at its top, beside the package, where README's commands
    name them (`models/default.safetensors`). Both are found from the package's own
    location, never from the current folder.
    """
    if kind not in SHIPPED:
        raise ValueError(f"unknown kind of shipped file {kind!r}; one of {SHIPPED}")
    inside = PACKAGE / "shipped" / kind
    return inside if inside.is_dir() else PACKAGE.parent / kind


def shipped_or_path(name: str, folder: Path, suffix: str) -> Path:
    """The file a name on the command line means. A bare name ("default") is the file
    shipped in `folder` first, then a file of that name in the current folder: a stray
    file or folder called "default" must not replace the shipped one. A name with a
    suffix or a folder in it is a path."""
    path = Path(name)
    if path.suffix or os.sep in name:
        return path
    shipped = folder / f"{name}{suffix}"
    return path if path.is_file() and not shipped.is_file() else shipped
