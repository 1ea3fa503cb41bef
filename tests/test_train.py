"""`singsynth train` end to end on a small real dataset with the `tiny` config."""
import json
import math
import re
import shutil
import subprocess
import sys

import pytest
import torch

from singsynth.cli.train import main
from singsynth.errors import ConfigError
from singsynth.model.checkpoint import load_model, read_tensors
from singsynth.model.config import CONFIGS
from singsynth.train.config import StageConfig, load_config
from singsynth.train.stages import crop_starts
from tests.train_fixtures import (REPO, TINY, assert_same_weights, cli_env, sets,  # noqa: F401
                                  train_dataset, weights, write_synthetic)

STAGE_FILES = ("ae.safetensors", "lstm.safetensors", "e2e.safetensors", "model.safetensors")
RUN = ["ae.epochs=3"]


def train(data, out, *args):
    assert main(["--config", TINY, "--data", str(data), "--out", str(out), *args]) == 0


@pytest.fixture(scope="module")
def full_run(train_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    train(train_dataset, out, *sets(*RUN))
    return out


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_all_three_stages_write_playable_checkpoints(full_run, train_dataset):
    for name in STAGE_FILES:
        model = load_model(full_run / name)
        assert model.config.name == "tiny"
        assert model.instruments == ["piano_1_000", "violin_040"]
        prov = model.provenance
        assert prov["dataset"] == str(train_dataset)
        assert (prov["train_notes"], prov["test_notes"]) == (64, 8)
        stage = name.split(".")[0] if name != "model.safetensors" else "e2e"
        assert prov["stage"] == stage
        assert prov["epochs"]["ae"] == 3
        assert set(prov["losses"]) == set(prov["epochs"])
        for losses in prov["losses"].values():
            assert set(losses) == {"train_loss", "test_spectral", "test_mse"}
            assert all(math.isfinite(v) for v in losses.values())
        with torch.no_grad():
            note = model.generate(torch.tensor([1]), torch.tensor([60]), torch.tensor([4]))
        assert note.shape == (1, 64000) and torch.isfinite(note).all()
    assert_same_weights(weights(full_run / "model.safetensors"), weights(full_run / "e2e.safetensors"))
    # Each stage trains only its own part: the LSTM stage leaves encoder and decoder alone.
    ae, lstm = weights(full_run / "ae.safetensors"), weights(full_run / "lstm.safetensors")
    assert all(torch.equal(ae[k], lstm[k]) for k in ae if not k.startswith("sequence."))
    assert not torch.equal(ae["sequence.output.weight"], lstm["sequence.output.weight"])


def test_log_has_one_line_per_epoch_per_stage(full_run):
    log = read_log(full_run)
    assert [(r["stage"], r["epoch"]) for r in log] == [
        ("ae", 1), ("ae", 2), ("ae", 3), ("lstm", 1), ("e2e", 1)]
    for r in log:
        assert {"stage", "epoch", "train_loss", "test_spectral", "test_mse", "seconds",
                "notes_per_s"} <= set(r)
        assert all(math.isfinite(r[k]) for k in ("train_loss", "test_spectral", "test_mse"))
        assert r["seconds"] > 0 and r["notes_per_s"] > 0


def test_autoencoder_train_loss_goes_down(full_run):
    losses = [r["train_loss"] for r in read_log(full_run) if r["stage"] == "ae"]
    assert losses[-1] < losses[0], losses


def test_same_seed_gives_identical_weights(full_run, train_dataset, tmp_path):
    train(train_dataset, tmp_path / "again", *sets(*RUN))
    for name in STAGE_FILES:
        assert_same_weights(weights(full_run / name), weights(tmp_path / "again" / name))


def test_lstm_stage_alone_after_ae(full_run, train_dataset, tmp_path):
    # What `--stage ae` leaves behind, then `--stage lstm` in the same folder.
    out = tmp_path / "run"
    out.mkdir()
    for name in ("ae.safetensors", "state-ae.safetensors"):
        shutil.copy(full_run / name, out / name)
    train(train_dataset, out, "--stage", "lstm", *sets(*RUN))
    assert [r["stage"] for r in read_log(out)] == ["lstm"]
    # Same seed, same starting weights: the very LSTM the three-stage run trained.
    assert_same_weights(weights(out / "lstm.safetensors"), weights(full_run / "lstm.safetensors"))
    assert_same_weights(weights(out / "model.safetensors"), weights(out / "lstm.safetensors"))
    assert load_model(out / "model.safetensors").provenance["stage"] == "lstm"
    assert not (out / "e2e.safetensors").exists()


def test_lstm_stage_without_autoencoder_is_refused(train_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"ae\.safetensors.*--stage ae"):
        train(train_dataset, tmp_path / "run", "--stage", "lstm", *sets())
    assert not list((tmp_path / "run").glob("*.safetensors"))


def test_existing_run_needs_resume_or_force(full_run, train_dataset, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(full_run, out)
    with pytest.raises(ConfigError, match="--resume.*-f"):
        train(train_dataset, out, *sets(*RUN))


def test_force_keeps_other_stages_log_and_drops_a_line_a_kill_cut_short(tmp_path):
    from singsynth.train import forget_stages

    (tmp_path / "lstm.safetensors").write_bytes(b"x")
    (tmp_path / "ae.safetensors").write_bytes(b"x")
    (tmp_path / "log.jsonl").write_text('{"stage": "ae", "epoch": 1}\n'
                                        '{"stage": "lstm", "epoch": 1}\n\n'
                                        '{"stage": "lstm", "epo')
    forget_stages(tmp_path, ["lstm"])
    assert (tmp_path / "log.jsonl").read_text() == '{"stage": "ae", "epoch": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.safetensors", "log.jsonl"]


# --- bad input ---------------------------------------------------------------------------

def test_exponent_without_dot_reads_as_float(tmp_path):
    # YAML 1.1 loads `4e-4` as a string; a learning rate written so must still count.
    path = tmp_path / "lr.yaml"
    path.write_text("ae: {lr: 4e-4}\n")
    assert load_config(path).ae.lr == 4e-4
    assert load_config(None, ["ae.eps=1e-2"]).ae.eps == 0.01


@pytest.mark.parametrize("text, pattern", [
    ("ae: {lr: fast}\n", r"ae\.lr must be float, got 'fast'"),
    ("ae: {learning_rate: 0.001}\n", r"unknown key ae\.learning_rate; allowed: epochs"),
    ("ae:\n", r"ae must be a mapping"),
    ("ae: {loss: l2}\n", r"ae\.loss is 'l2'; allowed"),
    ("model: huge\n", r"model is 'huge'; allowed: " + re.escape(", ".join(CONFIGS))),
    ("ae: {ffts: [1000, 7]}\n", r"ae\.ffts is \[1000, 7\]; allowed: a list of STFT sizes"),
    ("ae: {ffts: []}\n", r"ae\.ffts is \[\]; allowed"),
    ("ae: {ffts: 1024}\n", r"ae\.ffts must be list, got 1024"),
    ("ae: {eps: 0}\n", r"ae\.eps is 0; allowed: more than 0"),
    ("ae: {batch: 0}\n", r"ae\.batch is 0; allowed: 1 or more"),
    ("lstm: {tbptt: 0}\n", r"lstm\.tbptt is 0; allowed: 1 or more"),
    ("- ae\n", r"must be a mapping"),
    ("ae: {lr: [1\n", r"not valid YAML"),
])
def test_bad_config_names_key_and_file(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("override, pattern", [
    ("ae.epochs=two", r"ae\.epochs must be int, got 'two'"),
    ("ae.epochs=0", r"ae\.epochs is 0; allowed: 1 or more"),
    ("seed.x=1", r"seed is not a mapping"),
    ("e2e", r"must look like"),
])
def test_bad_override_names_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(TINY, [override])


def test_overrides_apply_over_the_file():
    cfg = load_config(TINY, ["ae.lr=0.01", "lstm.batch=4", "seed=7"])
    assert (cfg.model, cfg.seed, cfg.ae.lr, cfg.lstm.batch, cfg.e2e.crop) == ("tiny", 7, 0.01, 4, 2048)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "singsynth", "train", *args], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, pattern):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("singsynth train: error: ")
    assert pattern in lines[0], lines[0]


@pytest.fixture
def other(tmp_path):
    """A dataset whose instrument vocabulary differs from `train_dataset`'s."""
    return write_synthetic(tmp_path / "other", ["flute_073", "organ_016", "brass_061"],
                           range(60, 70))


def test_resume_with_another_vocabulary_is_refused(full_run, other, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_run / "state-ae.safetensors", out)
    proc = run_cli("--config", TINY, "--data", str(other), "--out", str(out), "--resume", *sets())
    assert_one_line_error(proc, "instrument vocabulary")
    assert "use the same --data" in proc.stderr


def test_stage_from_checkpoint_of_another_vocabulary_is_refused(full_run, other, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_run / "ae.safetensors", out)
    with pytest.raises(ConfigError, match="instrument vocabulary"):
        train(other, out, "--stage", "lstm", *sets())


def test_init_adds_a_harmonic_branch_to_a_trained_model(full_run, train_dataset, tmp_path):
    """`init` starts a larger model from a checkpoint: the shared tensors are the trained
    ones, the new harmonic branch trains at harmonics_lr x the stage's rate."""
    source = load_model(full_run / "lstm.safetensors")
    out = tmp_path / "harmonic"
    train(train_dataset, out, "--stage", "e2e",
          *sets("model=tiny-harmonic", f"init={full_run / 'lstm.safetensors'}",
                "e2e.epochs=1", "e2e.harmonics_lr=10", "e2e.lr=0.001",
                "e2e.residual_weight=0.1"))
    model = load_model(out / "e2e.safetensors")
    assert model.config.harmonics == 8 and model.harmonics is not None
    # The shared weights started from the source: one epoch is 2 Adam steps at lr 1e-3,
    # each moving a weight by about lr at most (a fresh LSTM differs by ~0.3).
    for name, trained in source.sequence.state_dict().items():
        assert (model.sequence.state_dict()[name] - trained).abs().max() < 0.01, name
    # The branch left its near-silent start (total-amplitude bias -5).
    assert model.harmonics.amplitude.bias[0] != -5.0
    meta = json.loads(read_tensors(out / "state-e2e.safetensors")[1]["state"])
    rates = [g["lr"] for g in meta["param_groups"]]
    assert len(rates) == 2 and rates[1] == pytest.approx(10 * rates[0])


def test_init_from_another_vocabulary_is_refused(full_run, other, tmp_path):
    with pytest.raises(ConfigError, match="init .*instrument vocabulary"):
        train(other, tmp_path / "run", "--stage", "e2e",
              *sets(f"init={full_run / 'lstm.safetensors'}"))


def test_residual_share_measures_the_decoder_inside_the_harmonic_band():
    from singsynth.train.stages import residual_share
    t = torch.arange(8192) / 16000
    low, high = torch.sin(2 * torch.pi * 110 * t), 0.5 * torch.sin(2 * torch.pi * 6000 * t)
    target = (low + high)[None]
    a1 = torch.tensor([21])                                # 27.5 Hz: 64 harmonics end at 1.77 kHz
    assert residual_share(low[None], target, a1, 64, 16000).item() == pytest.approx(1, abs=0.01)
    assert residual_share(high[None], target, a1, 64, 16000).item() < 0.01
    a4 = torch.tensor([69])                                # 440 Hz: the band reaches 7.2 kHz
    assert residual_share(high[None], target, a4, 64, 16000).item() == pytest.approx(0.25 / 1.25, abs=0.01)
    # A silent crop: the floor (mean square 1e-6) keeps the share finite.
    quiet = residual_share(1e-4 * low[None], torch.zeros(1, 8192), a4, 64, 16000).item()
    assert quiet == pytest.approx(1e-8 / 2 / 1e-6, rel=0.05)


def test_residual_weight_needs_a_harmonic_model(full_run, train_dataset, tmp_path):
    with pytest.raises(ConfigError, match="residual_weight needs a model with harmonics"):
        train(train_dataset, tmp_path / "run", "--stage", "e2e",
              *sets(f"init={full_run / 'lstm.safetensors'}", "e2e.residual_weight=0.1"))


def test_start_share_puts_that_share_of_crops_at_the_attack():
    def starts(share):
        cfg = StageConfig(crop=8192, crop_end=48000, start_share=share)
        return crop_starts(4000, cfg, torch.Generator().manual_seed(0))
    uniform, quarter = starts(0.0), starts(0.25)
    assert (uniform % 256 == 0).all() and uniform.max() <= 48000 - 8192
    assert (uniform == 0).float().mean() < 0.02                # 1 in 156 positions
    assert 0.22 < (quarter == 0).float().mean() < 0.28
    assert (starts(1.0) == 0).all()


def test_start_share_above_one_is_refused():
    with pytest.raises(ConfigError, match="start_share is 1.5; allowed: 0 to 1"):
        load_config(None, ["e2e.start_share=1.5"])


def test_dataset_without_test_notes_is_refused(tmp_path):
    # One pitch per instrument: the pitch-completion split has nothing to hold out.
    data = write_synthetic(tmp_path / "one-pitch", ["piano_1_000", "violin_040"], [60])
    proc = run_cli("--config", TINY, "--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "no test notes")
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_missing_config_file_cli(tmp_path, train_dataset):
    proc = run_cli("--config", str(tmp_path / "nope.yaml"), "--data", str(train_dataset),
                   "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "nope.yaml: no such config file")


def test_plot_writes_loss_curves_png(full_run, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_run / "log.jsonl", out)
    assert main(["--plot", str(out)]) == 0
    png = out / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out
    image = matplotlib.image.imread(png)
    # One panel per stage, side by side, with something drawn in them.
    assert image.shape[1] > 2 * image.shape[0] and image.std() > 0.05
    assert not list(out.glob("*.tmp*"))


def test_plot_without_a_log_is_a_one_line_error(tmp_path):
    proc = run_cli("--plot", str(tmp_path))
    assert_one_line_error(proc, "no training log")


def test_resume_with_another_model_size_is_refused(full_run, train_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_run / "state-ae.safetensors", out)
    with pytest.raises(ConfigError, match="different model size than 'small'.*own --config"):
        train(train_dataset, out, "--resume", "--set", "model=small")


def test_stage_from_checkpoint_of_another_model_size_is_refused(full_run, train_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_run / "ae.safetensors", out)
    with pytest.raises(ConfigError, match="a 'tiny' model, but the config says 'small'"):
        train(train_dataset, out, "--stage", "lstm", "--set", "model=small")


@pytest.mark.parametrize("device, pattern", [
    ("gpu", "--device 'gpu' is unknown; choose auto, cpu or cuda"),
    ("cuda", "--device cuda: this torch sees no CUDA GPU"),
])
def test_bad_device_is_a_one_line_error(device, pattern, train_dataset, tmp_path):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = run_cli("--config", TINY, "--data", str(train_dataset), "--out", str(tmp_path / "o"),
                   "--device", device)
    assert_one_line_error(proc, pattern)


def test_autocast_is_bf16_on_cuda_by_default_and_float32_on_cpu():
    from singsynth.model.sing import build
    from singsynth.train.trainer import autocast, autocast_dtype
    decoder = build("tiny", ["a"]).decoder
    s = torch.randn(1, 16, 20)
    with autocast("auto", "cpu"):
        assert decoder(s).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert decoder(s).dtype == torch.bfloat16
    assert autocast_dtype("auto", "cuda:0") == autocast_dtype("bf16", "cuda") == torch.bfloat16
    assert autocast_dtype("off", "cuda") is autocast_dtype("auto", "cpu") is None


def test_bf16_training_learns_and_keeps_float32_weights(train_dataset, tmp_path):
    out = tmp_path / "bf16"
    train(train_dataset, out, "--stage", "ae", *sets("amp=bf16", *RUN))
    losses = [r["train_loss"] for r in read_log(out)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    w = weights(out / "ae.safetensors")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in w.values())
    # Not the float32 run's weights: autocast really changed the arithmetic.
    f32 = tmp_path / "f32"
    train(train_dataset, f32, "--stage", "ae", *sets(*RUN))
    diff = max((w[k] - t).abs().max().item() for k, t in weights(f32 / "ae.safetensors").items())
    assert diff > 1e-4


def test_relative_waveform_term_weighs_quiet_and_loud_notes_alike():
    from singsynth.model.dsp import relative_mse
    torch.manual_seed(0)
    a, b = torch.randn(1, 4096), torch.randn(1, 4096)
    loud = relative_mse(a, b).item()
    assert abs(relative_mse(0.01 * a, 0.01 * b).item() - loud) < 0.02 * loud  # (the 1e-6 floor)
    assert relative_mse(b, b).item() == 0.0


def test_waveform_term_starts_at_wave_from():
    from singsynth.train.config import StageConfig
    from singsynth.train.stages import audio_loss
    torch.manual_seed(0)
    a, b = torch.randn(2, 4096), torch.randn(2, 4096)
    cfg = StageConfig(wave_weight=1.0, wave_from=100)
    spectral = audio_loss(StageConfig(), a, b, 0).item()
    assert audio_loss(cfg, a, b, 99).item() == spectral
    assert abs(audio_loss(cfg, a, b, 100).item() - spectral - 2.0) < 0.1  # E(a-b)²/E b² = 2
    decaying = StageConfig(wave_weight=1.0, wave_steps=200)
    assert audio_loss(decaying, a, b, 200).item() == spectral


def test_peak_term_penalises_only_samples_past_full_scale():
    from singsynth.train.stages import audio_loss
    torch.manual_seed(0)
    target = 0.5 * torch.rand(2, 4096) - 0.25
    inside = target * 2                                     # loud, but within +-0.5
    cfg = StageConfig(peak_weight=0.01)
    assert audio_loss(cfg, inside, target, 0).item() == audio_loss(StageConfig(), inside, target, 0).item()
    over = inside.clone()
    over[0, :100] = 1.49                                    # 100 samples 0.5 past 0.99
    extra = audio_loss(cfg, over, target, 0) - audio_loss(StageConfig(), over, target, 0)
    assert extra.item() == pytest.approx(0.01 * 100 * 0.5 ** 2 / 2, rel=1e-4)   # mean over 2 notes
