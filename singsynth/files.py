"""Small helpers for files: reading a path a user handed in (a regular file, a bounded
read, one-line errors), writing atomically (a temporary file of a fresh name, then a
rename), showing untrusted names safely, where singsynth's caches live, and what a model
or preset name means."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Type

from singsynth.errors import SingsynthError

MIB = 1 << 20
LONG_PART = 60  # path components longer than this are shortened in messages


def printable(text) -> str:
    """`text` with every character a terminal would act on escaped as Python would write
    it (newline -> \\n, ESC -> \\x1b): a name read from a file cannot move the cursor, clear
    the screen or forge a second line of output."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def shown(path) -> str:
    """A path for a one-line message: `printable`, with over-long components shortened
    (a 300-character name is shown as its first 60 characters and its length)."""
    parts = []
    for part in str(path).split(os.sep):
        if len(part) > LONG_PART:
            part = f"{part[:LONG_PART]}...({len(part)} characters)"
        parts.append(part)
    return printable(os.sep.join(parts))


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_error_line(path, exc: OSError, action: str = "read", option: str = "-o") -> str:
    """One line naming what went wrong with `path` and what to do about it.

    Args:
        action: "read" or "write" (what singsynth was doing with `path`).
        option: the command-line option that chose `path`, for the fix ("choose another -o").
    """
    code, head = exc.errno, f"cannot {action} {shown(path)}"
    if code == errno.ENOENT:
        return f"{head}: no such file or folder; check the path"
    if code in (errno.EACCES, errno.EPERM):
        able = "writable" if action == "write" else "readable"
        return (f"{head}: permission denied; make it {able} for this user (chmod) or "
                f"choose another {option if action == 'write' else 'file'}")
    if code == errno.ENAMETOOLONG:
        return f"{head}: a name in the path is too long (255 bytes at most); use a shorter name"
    if code in (errno.ENOSPC, errno.EDQUOT):
        folder = shown(Path(path).absolute().parent)
        return f"{head}: disk full; free space on {folder} or choose another {option}"
    if code == errno.EFBIG:
        return (f"{head}: the file is larger than this system's file size limit (ulimit -f); "
                "raise the limit or write a shorter file")
    if code == errno.EROFS:
        return f"{head}: read-only file system; choose another {option}"
    if code == errno.EISDIR:
        return f"{head}: it is a folder; give a file"
    if code == errno.ENOTDIR:
        return f"{head}: a part of the path is a file, not a folder; check the path"
    if code == errno.ELOOP:
        return f"{head}: too many symbolic links (a loop?); check the path"
    return f"{head}: {printable(exc.strerror or exc)}"


def missing(path) -> bool:
    """True only if nothing is at `path` (a name too long, a denied folder or a FIFO are
    there, or may be: `open_regular` then names what they are)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except (OSError, ValueError):
        return False
    return False


def check_regular(path, what: str, error: Type[SingsynthError] = SingsynthError) -> os.stat_result:
    """The `os.stat` of `path`, or `error` with one line unless it is a regular file.

    For paths a library opens itself (libsndfile, safetensors' memory map); where singsynth
    reads the bytes, `open_regular` checks the file it has actually opened.
    Args:
        what: what the file should be, for the message ("a MIDI file", "a checkpoint").
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(os_error_line(path, exc)) from None
    except ValueError:  # a NUL byte in the path
        raise error(f"{shown(path)}: not a valid path; check the name") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{shown(path)} is {_kind(st.st_mode)}, not a file; give {what}")
    return st


def open_regular(path, what: str, error: Type[SingsynthError] = SingsynthError) -> BinaryIO:
    """Open a user's `path` for reading in binary mode, refusing anything but a regular
    file (a folder, a FIFO, /dev/zero) with one `error` line.

    Opened non-blocking first, so that a FIFO with no writer is refused instead of
    hanging the open; the check is on the opened file, so a path swapped after the check
    cannot slip through.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(os_error_line(path, exc)) from None
    except ValueError:
        raise error(f"{shown(path)}: not a valid path; check the name") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{shown(path)} is {_kind(mode)}, not a file; give {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, what: str, limit: int,
               error: Type[SingsynthError] = SingsynthError) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (a bigger file is
    refused with one `error` line before it is read)."""
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        data = b"" if size > limit else f.read(limit + 1)  # +1: a file that grew meanwhile
        if size > limit or len(data) > limit:
            raise error(f"{shown(path)} is {max(size, len(data)):,} bytes, more than the "
                        f"{limit:,} {what} may be; is it the right file?")
        return data


def same_file(a, b) -> bool:
    """Whether paths `a` and `b` name the same existing file (links and `..` included)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


class KeepWriteError:
    """A binary file for libraries that call `write` through callbacks (soundfile's
    virtual I/O) and report a failed write only as "System error": writes go to `file`
    whole, and the first OSError (disk full: ENOSPC) is kept in `error` for the message.

    Args:
        file: an unbuffered binary file open for writing and seeking.
    """

    def __init__(self, file):
        self.file = file
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        if self.error is not None:
            return 0
        view, done = memoryview(data).cast("B"), 0
        try:  # an unbuffered write may be short; the next one then says why
            while done < len(view):
                n = self.file.write(view[done:])
                if not n:
                    break
                done += n
        except OSError as exc:
            self.error = exc
        return done

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)


def write_sound(path, audio, sample_rate: int, **kwargs) -> None:
    """`soundfile.write` into the existing, empty file `path` (a `mkstemp` file), raising
    the OSError behind a failed write (ENOSPC, EFBIG) instead of libsndfile's "System
    error". `kwargs`: soundfile's format and subtype."""
    import soundfile

    with open(path, "r+b", buffering=0) as f:
        sink = KeepWriteError(f)
        try:
            soundfile.write(sink, audio, sample_rate, **kwargs)
        except (RuntimeError, AssertionError):  # a short write: soundfile asserts
            if sink.error is None:
                raise
        if sink.error is not None:
            raise sink.error


@contextlib.contextmanager
def atomic_path(path, error: Optional[Type[SingsynthError]] = None) -> Iterator[str]:
    """A fresh temporary file beside `path` to write; renamed over `path` when the block
    ends without an exception, removed otherwise.

    The temporary file is made by `tempfile.mkstemp` (O_CREAT | O_EXCL, a random name),
    never at a fixed name: in a folder someone else prepared, a planted symbolic link at
    "<name>.tmp" would otherwise redirect the write to any file the user can write.
    Args:
        error: if given, an OSError while writing becomes this error with one line
            (disk full, permission denied... see `os_error_line`).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if error is None:
            raise
        raise error(os_error_line(path, exc, "write")) from None
    os.close(fd)
    try:
        yield tmp
        make_public(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if error is None:
            raise
        raise error(os_error_line(path, exc, "write")) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_atomic(path, data, error: Optional[Type[SingsynthError]] = None) -> None:
    """Write `data` (bytes, or str as UTF-8) to `path` through `atomic_path`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path, error) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def finishing(done=None) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the final rename of an output runs.

    A signal that lands inside the block is kept; if the block completes, the output is
    finished and `done()` (if given) runs, still inside: the CLI passes one that ignores
    later signals, so a Ctrl-C after the rename cannot turn a finished render into exit
    130. Then the handlers in place before are restored (unless `done` replaced them) and
    a kept signal is delivered to whatever handles it now: ignored after `done`, else a
    KeyboardInterrupt as usual (a batch still stops; this output is whole). Only the main
    thread can swap handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        if done:
            done()
        return
    kept = []
    ours = lambda signum, frame: kept.append(signum)  # noqa: E731
    old = {s: signal.signal(s, ours) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        if done:
            done()
    finally:
        for s, handler in old.items():
            if signal.getsignal(s) is ours:  # `done` may have set handlers of its own
                signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if kept:
            os.kill(os.getpid(), kept[0])  # to the handler now in place


def ignore_interrupts() -> None:
    """From now on Ctrl-C and SIGTERM do nothing: the command's output is complete and
    only its closing line remains."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def make_public(path) -> None:
    """Give `path` the permissions any new file (0666) or folder (0777) gets here, less
    the umask.

    `tempfile.mkstemp` and `mkdtemp` create files and folders their owner only can read;
    a checkpoint, a rendered song or a dataset renamed from one would otherwise stay private.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


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
    return path if _is_file(path) and not _is_file(shipped) else shipped


def _is_file(path: Path) -> bool:
    """`Path.is_file`, False for a path the system refuses (a name over 255 bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
