"""Two Gloo processes on CPU under torchrun train the same weights as one process.

The worker is the real `singsynth train` CLI under `torch.distributed.run`, with one
addition: after each stage's loop returns, every rank saves the weights it holds as
`replica-<stage>-<rank>.safetensors`, so the test can compare the replicas directly.
"""
import subprocess
import sys

import pytest
import torch.distributed as dist

from singsynth.cli.train import main
from singsynth.model.checkpoint import load_model
from tests.train_fixtures import (REPO, TINY, assert_same_weights, cli_env, sets,  # noqa: F401
                                  train_dataset, weights)

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this torch build has no Gloo backend")

WORKER = '''
import sys
import torch.distributed as dist
from singsynth.model.checkpoint import save_model
from singsynth.train.trainer import Loop

stage_loop = Loop.run


def run_and_save_replica(self, resume):
    result = stage_loop(self, resume)
    rank, size = dist.get_rank(), dist.get_world_size()
    save_model(self.out / f"replica-{self.task.name}-{rank}.safetensors", self.model,
               {"rank": rank, "world_size": size})
    return result


Loop.run = run_and_save_replica
from singsynth.cli.train import main
sys.exit(main(sys.argv[1:]))
'''
STAGES = ("ae", "lstm", "e2e")


def args(data, out):
    # 64 training notes: ae 8 steps of 8 notes, lstm 4 batches x 9 TBPTT windows of 16
    # notes, e2e 2 steps of 32 notes; each process trains on half of every batch.
    return ["--config", TINY, "--data", str(data), "--out", str(out), "--device", "cpu",
            *sets("ae.epochs=1")]


@pytest.fixture(scope="module")
def ddp_run(train_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    out = tmp / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), *args(train_dataset, out)]
    env = cli_env()
    env["OMP_NUM_THREADS"] = "1"  # two processes on two cores
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def single_run(train_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    assert main(args(train_dataset, out)) == 0
    return out


def test_both_ranks_trained_every_stage(ddp_run):
    for stage in STAGES:
        for rank in (0, 1):
            prov = load_model(ddp_run / f"replica-{stage}-{rank}.safetensors").provenance
            assert prov == {"rank": rank, "world_size": 2}
    # Rank 0 alone writes the run's checkpoints and log.
    assert len((ddp_run / "log.jsonl").read_text().splitlines()) == 3
    assert load_model(ddp_run / "model.safetensors").provenance["stage"] == "e2e"


def test_replicas_hold_identical_weights(ddp_run):
    for stage in STAGES:
        replica0 = weights(ddp_run / f"replica-{stage}-0.safetensors")
        assert_same_weights(replica0, weights(ddp_run / f"replica-{stage}-1.safetensors"))
        assert_same_weights(replica0, weights(ddp_run / f"{stage}.safetensors"))


def test_two_processes_match_one_process_on_the_same_global_batch(ddp_run, single_run):
    for stage in STAGES:
        assert_same_weights(weights(ddp_run / f"{stage}.safetensors"),
                            weights(single_run / f"{stage}.safetensors"), atol=1e-5)
    # The tolerance is tight next to what the stages moved (Adam steps of ~1e-3).
    ae, lstm, e2e = (weights(single_run / f"{s}.safetensors") for s in STAGES)
    assert (ae["sequence.output.weight"] - lstm["sequence.output.weight"]).abs().max() > 1e-3
    assert (lstm["decoder.conv1.weight"] - e2e["decoder.conv1.weight"]).abs().max() > 1e-4
