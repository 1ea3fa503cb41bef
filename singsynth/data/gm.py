"""General MIDI program families and NSynth-style labels for SoundFont renders."""

GM_FAMILIES = [
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble",
    "brass", "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic",
    "percussive", "sound_effects",
]
DRUMS_FAMILY = len(GM_FAMILIES)  # 16: drum kits (bank 128) are not a GM program family
FAMILY_NAMES = GM_FAMILIES + ["drums"]

# NSynth's instrument_source values.
SOURCES = ["acoustic", "electronic", "synthetic"]

# GM programs whose sound is electric (amplified/electromechanical) or synthesized.
# Everything else in GM names an acoustic instrument. A SoundFont only plays back
# samples, so this labels what the preset imitates, as NSynth labels its instruments.
_ELECTRONIC = {4, 5, 16, 17, 18, 26, 27, 28, 29, 30, 31, 33, 34, 35, 36, 37}
_SYNTHETIC = set(range(38, 40)) | set(range(80, 104))


def family(program: int, drums: bool = False) -> int:
    """GM family index 0-15 of a program 0-127, or 16 for a drum kit."""
    return DRUMS_FAMILY if drums else program // 8


def source(program: int, drums: bool = False) -> int:
    """NSynth instrument_source index (0 acoustic, 1 electronic, 2 synthetic)."""
    if drums:
        return 0
    if program in _SYNTHETIC:
        return 2
    return 1 if program in _ELECTRONIC else 0
