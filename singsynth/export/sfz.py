"""Write one instrument of a `Bank` as an SFZ file and a folder of sample files.

`NAME.sfz` sits beside `NAME_samples/`, one FLAC or WAV file per sample; every region
names its file, keys, velocities and loop. SFZ players scale each note by its velocity
unless told not to (amp_veltrack, default 100 %): singsynth's samples carry their own
dynamics, so it is 0. Loops are continuous (the sustain loop plays on through the
release), as in singsynth, where a released voice keeps looping while it fades.
"""
from __future__ import annotations

from pathlib import Path

from singsynth.export.bank import SFZ_RELEASE_PER_SECOND, Bank

FORMATS = {"flac": ("FLAC", "PCM_24"), "wav": ("WAV", "PCM_24")}


def samples_folder(sfz_path) -> str:
    """The name of the sample folder beside `sfz_path`: `NAME_samples`."""
    return f"{Path(sfz_path).stem}_samples"


def sfz_text(bank: Bank, folder: str, ext: str, instrument: int = 0) -> str:
    """The .sfz file's text for `bank.instruments[instrument]`, samples in `folder/`."""
    ins = bank.instruments[instrument]
    lines = [f"// {bank.name}: {ins.name}", f"// {bank.comment}" if bank.comment else "",
             "<control>", f"default_path={folder}/", "",
             "<global>", "loop_mode=loop_continuous", "amp_veltrack=0",
             f"ampeg_release={ins.release * SFZ_RELEASE_PER_SECOND:.4f}"]
    if ins.pan:
        lines.append(f"pan={ins.pan * 100:.1f}")
    lines.append("")
    for r in ins.regions:
        s = bank.samples[r.sample]
        # SFZ's loop_end is the loop's last sample (inclusive); Sample.loop_end is past it.
        volume = f" volume={-r.attenuation:.2f}" if r.attenuation else ""
        lines.append(f"<region> sample={s.name}.{ext} lokey={r.lokey} hikey={r.hikey} "
                     f"pitch_keycenter={s.key} lovel={r.lovel} hivel={r.hivel} "
                     f"loop_start={s.loop_start} loop_end={s.loop_end - 1}{volume}")
    return "\n".join(lines) + "\n"


def write_sfz(bank: Bank, sfz_path, folder_path, folder_name: str, ext: str = "flac") -> None:
    """Write the sample files into `folder_path` (an existing empty folder) and the text of
    the .sfz, naming the folder `folder_name` (relative to the .sfz), to `sfz_path`.

    Only samples some region plays are written.
    """
    import soundfile

    fmt, subtype = FORMATS[ext]
    used = sorted({r.sample for ins in bank.instruments for r in ins.regions})
    for i in used:
        s = bank.samples[i]
        soundfile.write(str(Path(folder_path) / f"{s.name}.{ext}"), s.data, bank.sample_rate,
                        format=fmt, subtype=subtype)
    Path(sfz_path).write_text(sfz_text(bank, folder_name, ext), encoding="utf-8")


def read_regions(sfz_path) -> list:
    """The <region> lines of an .sfz this module wrote: a list of {opcode: value} dicts,
    with `sample` resolved to a path through `default_path` (for checking an export)."""
    base = Path(sfz_path).parent
    default_path, regions = "", []
    for line in Path(sfz_path).read_text(encoding="utf-8").splitlines():
        line = line.split("//", 1)[0].strip()
        if line.startswith("default_path="):
            default_path = line.split("=", 1)[1]
        elif line.startswith("<region>"):
            fields = dict(item.split("=", 1) for item in line[len("<region>"):].split())
            fields["sample"] = base / default_path / fields["sample"]
            regions.append(fields)
    return regions
