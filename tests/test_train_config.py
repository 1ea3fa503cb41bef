"""`load_config`: every bad config file or --set value is one ConfigError line that names
the key (or file) and what is allowed; values the training code cannot run are refused
here, before any data is loaded."""
import pytest

from singsynth.errors import ConfigError
from singsynth.train.config import load_config
from tests.train_fixtures import TINY


@pytest.mark.parametrize("override, pattern", [
    # A crop longer than a note indexes past its samples.
    ("ae.crop=65536", r"ae\.crop is 65536; allowed: 0 \(whole notes\) or a multiple of 256 "
                      r"from 1024 to 64000"),
    # The spectral loss needs a crop at least as long as its largest STFT.
    ("ae.crop=256", r"ae\.crop is 256; allowed: .* from 1024 to 64000"),
    ("e2e.crop=300", r"e2e\.crop is 300; allowed: 0 \(whole notes\) or a multiple of 256"),
    ("ae.grad_clip=-1", r"ae\.grad_clip is -1; allowed: 0 or more"),
    ("ae.final_lr=-0.5", r"ae\.final_lr is -0.5; allowed: 0 or more"),
    ("ae.lr=0", r"ae\.lr is 0; allowed: more than 0"),
    ("ae.lr=-1e-3", r"ae\.lr is -0\.001; allowed: more than 0"),
    ("ae.grad_clip=.nan", r"ae\.grad_clip is nan; allowed: a finite number"),
    ("ae.lr=.inf", r"ae\.lr is inf; allowed: a finite number"),
    ("ae.lr=[1", r"override 'ae\.lr=\[1': not valid YAML .*; quote a string"),
])
def test_bad_override_is_one_config_error(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(TINY, [override])
    assert "\n" not in str(err.value)


def test_crop_limits_follow_the_largest_fft_and_the_loss():
    # Largest STFT 2048: 1792 is too short, 2048 fits.
    with pytest.raises(ConfigError, match=r"ae\.crop is 1792; allowed: .* from 2048 to 64000"):
        load_config(TINY, ["ae.ffts=[2048, 512]", "ae.crop=1792"])
    assert load_config(TINY, ["ae.ffts=[2048, 512]", "ae.crop=2048"]).ae.crop == 2048
    # Whole notes and the longest crop, a whole note's 64,000 samples, are fine.
    assert load_config(TINY, ["ae.crop=0"]).ae.crop == 0
    assert load_config(TINY, ["ae.crop=64000"]).ae.crop == 64000
    # The waveform MSE has no STFT: a short crop is fine...
    assert load_config(TINY, ["ae.loss=mse", "ae.crop=256"]).ae.crop == 256
    # ...unless the residual term, whose spectrogram frames are 1,024 samples, is on.
    with pytest.raises(ConfigError, match=r"ae\.crop is 512; allowed: .* from 1024"):
        load_config(TINY, ["ae.loss=mse", "ae.crop=512", "ae.residual_weight=0.1"])


def test_zero_grad_clip_and_final_lr_stay_allowed():
    cfg = load_config(TINY, ["ae.grad_clip=0", "ae.final_lr=0"])
    assert (cfg.ae.grad_clip, cfg.ae.final_lr) == (0.0, 0.0)


@pytest.mark.parametrize("make, pattern", [
    (lambda tmp: tmp, r"is a folder, not a config file; pass a \.yaml file"),
    (lambda tmp: tmp / "binary.yaml", r"not a text file \(UTF-8\); pass a \.yaml config"),
    (lambda tmp: tmp / "deep.yaml", r"YAML nested more than 32 levels deep"),
])
def test_unreadable_config_file_is_one_config_error(tmp_path, make, pattern):
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xff\xfe sf2 \x80\x81")
    (tmp_path / "deep.yaml").write_text("[" * 100_000)
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)

