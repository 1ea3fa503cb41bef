"""Files a user hands in or a folder someone else prepared (#28): planted links, special
files, names too long, unreadable files, bad samples, a full disk, an input given as the
output, escape sequences in names, a Ctrl-C after the output is complete."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from singsynth.cli import main as cli_main
from singsynth.errors import DatasetError, MidiFileError, SingsynthError
from tests.test_render import SineSource, simple_song

LONG = "n" * 300  # one path component over the 255-byte limit


def run(argv, capsys):
    """(exit code, stdout, stderr) of the CLI run in this process."""
    with pytest.raises(SystemExit) as info:
        cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def one_error_line(err: str, *words) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def alarm(seconds=20):
    """Fail instead of hanging (a FIFO read before the fix blocked forever)."""
    def fire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def note(key, instrument="piano_0", pitch=60, velocity=100):
    return {key: {"instrument": 0, "instrument_str": instrument, "pitch": pitch,
                  "velocity": velocity, "sample_rate": 16000, "instrument_family_str": "keyboard"}}


def dataset(root: Path, notes=2, wave=None, subtype="PCM_16") -> Path:
    """A small dataset: `notes` notes of one instrument, 4 s of quiet noise each."""
    (root / "audio").mkdir(parents=True)
    examples = {}
    for i in range(notes):
        key = f"piano_0-{60 + i:03d}-100"
        examples.update(note(key, pitch=60 + i))
        data = wave if wave is not None else np.full(64000, 0.01, np.float32)
        sf.write(root / "audio" / f"{key}.wav", data, 16000, subtype=subtype)
    (root / "examples.json").write_text(json.dumps(examples))
    return root


# ---- 1. no write through a link planted in a user's folder ---------------------------------

def test_dataset_info_does_not_write_through_a_planted_tmp_link(tmp_path, capsys):
    root = dataset(tmp_path / "ds")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "split.json.tmp").symlink_to(victim)
    code, out, _ = run(["dataset", "info", root], capsys)
    assert code == 0 and "2 notes" in out
    assert victim.read_text() == "precious"
    assert (root / "split.json").is_file() and not (root / "split.json").is_symlink()
    assert json.loads((root / "split.json").read_text())["version"] == 1
    assert sorted(p.name for p in root.iterdir()) == ["audio", "examples.json", "split.json",
                                                      "split.json.tmp"]


def test_atomic_writes_use_a_fresh_name_and_leave_nothing_on_failure(tmp_path):
    from singsynth.files import atomic_path, write_atomic

    victim = tmp_path / "victim"
    victim.write_text("precious")
    for fixed in ("out.json.tmp", ".out.json.tmp", "out.json.part", ".out.json.part"):
        (tmp_path / fixed).symlink_to(victim)
    write_atomic(tmp_path / "out.json", "{}")
    assert (tmp_path / "out.json").read_text() == "{}" and victim.read_text() == "precious"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "other.json") as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("killed")
    assert not (tmp_path / "other.json").exists()
    assert len(list(tmp_path.iterdir())) == 6  # victim, out.json, the four links


def test_a_recording_never_writes_through_a_planted_part_link(tmp_path):
    from singsynth.hosts.record import Recorder

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".take.wav.part").symlink_to(victim)
    rec = Recorder(tmp_path / "take.wav", 48000, channels=2, seconds=1.0)
    rec.start()
    rec.push(np.full((256, 2), 0.25, np.float32))
    rec.close()
    assert victim.read_text() == "precious"
    audio, rate = sf.read(tmp_path / "take.wav", dtype="float32")
    assert rate == 48000 and audio.shape == (256, 2) and np.all(audio == 0.25)


# ---- 5, 6. special files, unreadable files and names too long are one line -----------------

def special_files(tmp_path):
    """{what: path} of files that are not regular files."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.mid"
    folder.mkdir()
    return {"a device": "/dev/zero", "a device ": "/dev/urandom", "a named pipe (FIFO)": fifo,
            "a folder": folder}


def test_special_files_as_the_midi_file_are_refused_unread(tmp_path, capsys):
    for kind, path in special_files(tmp_path).items():
        with alarm(), pytest.raises(MidiFileError) as info:
            from singsynth.hosts.midifile import read_midi
            read_midi(path)
        assert f"is {kind.strip()}, not a file" in str(info.value)
        code, _, err = run(["render", path, "-o", tmp_path / "out.wav", "--no-cache"], capsys)
        assert code == 1
        one_error_line(err, kind.strip())
        assert not (tmp_path / "out.wav").exists()


def test_a_midi_file_over_the_size_bound_is_refused_before_reading(tmp_path, monkeypatch):
    import singsynth.hosts.midifile as midi

    path = tmp_path / "huge.mid"
    with open(path, "wb") as f:  # sparse: 300 MB that take no disk
        f.write(b"MThd")
        f.truncate(300 << 20)
    with pytest.raises(MidiFileError, match="more than the"):
        midi.read_midi(path)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_examples_json_or_a_wav_that_is_a_special_file_is_one_line(tmp_path, capsys, target):
    root = dataset(tmp_path / "ds")
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = tmp_path / "fifo"
    wav = root / "audio" / "piano_0-060-100.wav"
    wav.unlink()
    wav.symlink_to(target)
    with alarm():
        code, out, _ = run(["dataset", "check", root], capsys)
    assert code == 1 and "piano_0-060-100.wav" in out and "not a file" in out
    assert out.strip().splitlines()[-1].endswith("1 problem(s)")
    (root / "examples.json").unlink()
    (root / "examples.json").symlink_to(target)
    for action in ("check", "info"):
        with alarm():
            code, out, err = run(["dataset", action, root], capsys)
        assert code == 1 and "examples.json" in out + err and "not a file" in out + err
        assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--preset", "--model"])
def test_a_folder_or_fifo_as_preset_or_model_says_what_it_is(tmp_path, capsys, option):
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    fifo = tmp_path / "thing.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "thing.safetensors"
    folder.mkdir()
    for path, kind in ((fifo, "a named pipe (FIFO)"), (folder, "a folder")):
        with alarm():
            code, _, err = run(["render", song, "-o", tmp_path / "out.wav", option, path,
                                "--no-cache"], capsys)
        assert code == 1
        line = one_error_line(err, kind)
        assert "not found" not in line and "no such" not in line
        assert not (tmp_path / "out.wav").exists()


def test_names_over_255_bytes_are_one_line(tmp_path, capsys, tiny_checkpoint):
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    long_dir = tmp_path / LONG
    cases = [
        ["render", song, "-o", tmp_path / f"{LONG}.wav", "--no-cache"],
        ["render", song, "-o", long_dir / "out.wav", "--no-cache"],
        ["render", song, "-o", tmp_path / "out.wav", "--preset", tmp_path / f"{LONG}.yaml",
         "--no-cache"],
        ["render", song, "-o", tmp_path / "out.wav", "--model",
         tmp_path / f"{LONG}.safetensors", "--no-cache"],
        ["info", tmp_path / f"{LONG}.safetensors"],
        ["render", tmp_path / f"{LONG}.mid", "-o", tmp_path / "out.wav", "--no-cache"],
    ]
    for argv in cases:
        code, _, err = run(argv, capsys)
        assert code == 1, argv
        line = one_error_line(err, "too long")
        assert LONG not in line  # shortened in the message
    assert sorted(os.listdir(tmp_path)) == ["in.mid"]


def test_a_note_name_over_255_bytes_in_dataset_check_is_one_problem(tmp_path, capsys):
    root = dataset(tmp_path / "ds")
    examples = json.loads((root / "examples.json").read_text())
    examples.update(note(LONG, pitch=70))
    (root / "examples.json").write_text(json.dumps(examples))
    code, out, err = run(["dataset", "check", root], capsys)
    assert code == 1 and "Traceback" not in err
    problems = out.strip().splitlines()[:-1]
    assert len(problems) == 1 and "too long for a file name" in problems[0]


# Runs each command line through the CLI in one process; prints [[code, stderr], ...].
_RUN_ALL = """
import contextlib, io, json, sys
from singsynth.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exc:
            results.append([exc.code, err.getvalue()])
print(json.dumps(results))
"""


def without_root_reads(argvs, tmp_path):
    """[(exit code, stderr)] of CLI runs in one child process without the capabilities
    that let root read any file (setpriv drops them from its bounding set)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's read-anything capability")
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           sys.executable, "-c", _RUN_ALL,
                           json.dumps([[str(a) for a in argv] for argv in argvs])],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_checkpoint_the_user_cannot_read_is_one_line(tmp_path, capsys, tiny_checkpoint):
    ckpt = tmp_path / "private.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    ckpt.chmod(0)
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    argvs = [["info", ckpt],
             ["render", song, "-o", tmp_path / "o.wav", "--model", ckpt, "--no-cache"]]
    if os.geteuid() == 0:
        results = without_root_reads(argvs, tmp_path)
    else:
        results = [run(argv, capsys)[::2] for argv in argvs]
    assert len(results) == 2
    for code, err in results:
        assert code == 1
        one_error_line(err, "permission denied", "private.safetensors")
    assert not (tmp_path / "o.wav").exists()


# ---- 7. bad samples: in a dataset, in the note cache --------------------------------------

@pytest.mark.parametrize("value, words", [
    (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
    (10.0, "beyond full scale"), (-10.0, "beyond full scale")])
def test_dataset_check_reports_nan_inf_and_out_of_range_audio(tmp_path, capsys, value, words):
    root = dataset(tmp_path / "ds", notes=1, wave=np.full(64000, value, np.float32),
                   subtype="FLOAT")
    code, out, _ = run(["dataset", "check", root], capsys)
    assert code == 1
    problems = out.strip().splitlines()[:-1]
    assert len(problems) == 1 and words in problems[0] and "piano_0-060-100.wav" in problems[0]


def test_dataset_check_reads_a_wav_header_before_its_samples(tmp_path, capsys, monkeypatch):
    """A WAV claiming 400 million samples (sparse on disk) is refused from its header."""
    root = dataset(tmp_path / "ds", notes=1)
    wav = root / "audio" / "piano_0-060-100.wav"
    with sf.SoundFile(wav, "w", 16000, 1, subtype="PCM_16") as f:
        f.write(np.zeros(16, np.int16))
    with open(wav, "r+b") as f:  # the data chunk's size says 800 MB; the file is sparse
        raw = f.read(64)
        at = raw.index(b"data") + 4
        f.seek(at)
        f.write((800_000_000).to_bytes(4, "little"))
        f.seek(0, 2)
        f.truncate(at + 4 + 800_000_000)

    def no_whole_reads(*args, **kwargs):
        raise AssertionError("the whole file was read before its length was checked")
    monkeypatch.setattr(sf, "read", no_whole_reads)
    code, out, _ = run(["dataset", "check", root], capsys)
    assert code == 1 and "400000000 samples long, expected 64000" in out


def test_a_note_cache_replaced_by_nan_is_made_again_not_played(tmp_path, caplog):
    from singsynth.hosts.render import render_file

    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    kwargs = dict(use_cache=True, cache_dir=tmp_path / "cache", preset="default",
                  progress=False, tail=0.1)
    render_file(song, tmp_path / "a.wav", source=SineSource(), **kwargs)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert files
    for path in files:
        np.save(path, np.full(SineSource.note_samples, np.nan, np.float32))
    source = SineSource()
    report = render_file(song, tmp_path / "b.wav", source=source, **kwargs)
    assert report.notes_from_disk == 0 and len(source.rendered) == len(files)
    assert "NaN, infinite or out-of-range" in caplog.text
    a, b = sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0]
    assert np.array_equal(a, b) and np.isfinite(b).all() and np.abs(b).max() < 0.99
    for path in files:  # and the cache holds good notes again
        assert np.isfinite(np.load(path)).all()


def test_the_note_cache_ignores_a_fifo_or_an_oversized_file(tmp_path):
    from singsynth.generation.diskcache import DiskCachedSource
    from singsynth.notes import NoteKey, single

    cached = DiskCachedSource(SineSource(), tmp_path)
    key = NoteKey(single(0), 60, 2.0)
    cached.dir.mkdir(parents=True)
    os.mkfifo(cached.path(key))
    with alarm():
        assert cached.load(key) is None
    os.unlink(cached.path(key))
    np.save(cached.path(key), np.zeros(10 * SineSource.note_samples, np.float32))
    assert cached.load(key) is None


# ---- 8. -f never replaces an input -----------------------------------------------------------

def test_render_refuses_to_write_over_its_input_even_with_f(tmp_path, capsys):
    song = tmp_path / "song.wav"  # a MIDI file with an audio name
    song.write_bytes(simple_song())
    os.link(song, tmp_path / "hard.wav")
    (tmp_path / "sub").mkdir()
    for out in (song, tmp_path / "hard.wav", tmp_path / "sub" / ".." / "song.wav"):
        code, _, err = run(["render", song, "-o", out, "-f", "--no-cache"], capsys)
        assert code == 1
        one_error_line(err, "is the input file", "-f never replaces an input")
    assert song.read_bytes() == simple_song()
    assert sorted(os.listdir(tmp_path)) == ["hard.wav", "song.wav", "sub"]


# ---- 9. a full disk, escaped names, Ctrl-C after the output is complete ----------------------

def render_sine(song, out):
    from singsynth.hosts.render import render_file
    return render_file(song, out, source=SineSource(), use_cache=False, preset="default",
                       progress=False, tail=2.0)


def test_a_file_size_limit_is_named_not_system_error(tmp_path):
    import resource

    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, old_limit[1]))
    try:
        with pytest.raises(SingsynthError) as err:
            render_sine(song, tmp_path / "out.wav")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "System error" not in str(err.value) and "file size limit" in str(err.value)
    assert os.listdir(tmp_path) == ["in.mid"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (a disk that fills), when this user may mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_named_with_its_fix(tmp_path, small_tmpfs):
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    with pytest.raises(SingsynthError) as err:
        render_sine(song, small_tmpfs / "out.wav")
    line = str(err.value)
    assert "System error" not in line
    assert f"disk full; free space on {small_tmpfs} or choose another -o" in line
    assert os.listdir(small_tmpfs) == []


def test_a_full_disk_while_recording_is_named(tmp_path, small_tmpfs):
    from singsynth.errors import DeviceError
    from singsynth.hosts.record import Recorder

    rec = Recorder(small_tmpfs / "take.wav", 48000, channels=2, seconds=1.0)
    rec.start()
    for _ in range(40):  # 80 KB of float32 into 64 KB
        rec.push(np.full((256, 2), 0.1, np.float32))
    with pytest.raises(DeviceError, match="disk full; free space on .* or choose another --record"):
        rec.close()
    assert os.listdir(small_tmpfs) == []


ESC = "evil\x1b[2J\x1b]0;pwned\x07\nforged line"


def test_info_and_dataset_output_escape_names(tmp_path, capsys):
    from singsynth.model.checkpoint import save_model
    from singsynth.model.sing import build

    ckpt = tmp_path / "esc.safetensors"
    save_model(ckpt, build("tiny", ["piano", ESC]), {})
    code, out, _ = run(["info", ckpt], capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "1:evil\\x1b[2J\\x1b]0;pwned\\x07\\nforged line" in out
    assert not any(line.startswith("forged line") for line in out.splitlines())

    root = dataset(tmp_path / f"ds\x1b[31m", notes=1)
    examples = json.loads((root / "examples.json").read_text())
    examples["piano_0-060-100"]["instrument_str"] = ESC
    (root / "examples.json").write_text(json.dumps(examples))
    code, out, _ = run(["dataset", "info", root], capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "ds\\x1b[31m" in out and "evil\\x1b[2J" in out
    assert not any(line.startswith("forged line") for line in out.splitlines())
    (root / "audio" / "stray\x1b[2J.wav").write_bytes(b"")
    code, out, _ = run(["dataset", "check", root], capsys)
    assert code == 1 and "\x1b" not in out and "stray\\x1b[2J.wav" in out


def test_ctrl_c_after_the_final_rename_exits_0_with_the_file(tmp_path, capsys, monkeypatch,
                                                              tiny_checkpoint):
    """The signal lands just after the rename: the render is complete, exit 0."""
    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("out.wav"):
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code, out, err = run(["render", song, "-o", tmp_path / "out.wav", "--model",
                              tiny_checkpoint, "--preset", "default", "--no-cache", "-q"], capsys)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert code == 0 and "interrupted" not in err and "rendered" in out
    assert sf.info(tmp_path / "out.wav").frames > 0


def test_ctrl_c_during_the_rename_of_one_file_of_a_batch_still_stops_it(tmp_path, monkeypatch):
    """Without `done` (a library caller, a batch before its last file) the Ctrl-C is
    delivered once the rename is over: the file is whole, the caller is interrupted."""
    from singsynth.hosts.render import render_file

    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        render_file(song, tmp_path / "out.wav", source=SineSource(), use_cache=False,
                    preset="default", progress=False, tail=0.1)
    assert sf.info(tmp_path / "out.wav").frames > 0
    assert sorted(os.listdir(tmp_path)) == ["in.mid", "out.wav"]


def test_ctrl_c_before_the_rename_still_interrupts_and_leaves_nothing(tmp_path, monkeypatch):
    from singsynth.hosts.render import render_file

    song = tmp_path / "in.mid"
    song.write_bytes(simple_song())

    def interrupt(src, dst):
        os.kill(os.getpid(), signal.SIGINT)
        raise OSError(5, "Input/output error")  # the rename itself failed
    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises((KeyboardInterrupt, SingsynthError)):
        render_file(song, tmp_path / "out.wav", source=SineSource(), use_cache=False,
                    preset="default", progress=False, tail=0.1)
    assert os.listdir(tmp_path) == ["in.mid"]


def test_split_json_that_is_a_fifo_is_one_line(tmp_path):
    from singsynth.data.split import load_split

    os.mkfifo(tmp_path / "split.json")
    with alarm(), pytest.raises(DatasetError, match="named pipe"):
        load_split(tmp_path, {"piano": {60, 61}})


def test_a_config_that_is_a_fifo_or_device_is_one_line(tmp_path):
    from singsynth.errors import ConfigError
    from singsynth.train.config import load_config

    os.mkfifo(tmp_path / "c.yaml")
    for path in (tmp_path / "c.yaml", "/dev/zero"):
        with alarm(), pytest.raises(ConfigError, match="not a file"):
            load_config(path)


def test_a_full_disk_while_building_a_dataset_is_named(tmp_path, small_tmpfs):
    from singsynth.data.soundfont import write_wav

    with pytest.raises(DatasetError) as err:
        write_wav(small_tmpfs / "note.wav", np.zeros(64000, np.float32) + 0.1)  # 128 KB
    assert f"disk full; free space on {small_tmpfs} or choose another --out" in str(err.value)
    assert os.listdir(small_tmpfs) == []


def test_a_record_path_too_long_is_one_line(tmp_path):
    from singsynth.errors import DeviceError
    from singsynth.hosts.record import check_record_path

    with pytest.raises(DeviceError, match="too long"):
        check_record_path(tmp_path / f"{LONG}.wav", overwrite=False)


def test_a_samples_map_that_is_a_fifo_is_one_line(tmp_path):
    from singsynth.data.samples import read_map

    os.mkfifo(tmp_path / "map.csv")
    with alarm(), pytest.raises(DatasetError, match="named pipe"):
        read_map(tmp_path / "map.csv", tmp_path)


def test_a_loss_plot_never_writes_through_a_planted_tmp_link(tmp_path):
    from singsynth.eval import plots

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "loss.png.tmp").symlink_to(victim)
    fig = plots._pyplot().figure()
    plots._save(fig, tmp_path / "loss.png")
    assert victim.read_text() == "precious"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
