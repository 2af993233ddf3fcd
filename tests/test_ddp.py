import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank, world, port, **env):
    """This process's torchrun-style environment for rank ``rank`` of ``world``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), **env)


def _spawn(worker, world: int = 2) -> dict:
    """Run ``worker(rank, world, port, out)`` in ``world`` processes; returns ``{rank: out[rank]}``."""
    port = _free_port()
    with mp.Manager() as mgr:
        out = mgr.dict()
        mp.spawn(worker, args=(world, port, out), nprocs=world, join=True)
        return dict(out)


def _centre_worker(rank, world, port, out):
    _join(rank, world, port)
    from ssrl_lab.train import distributed as dist
    from ssrl_lab.train.dino import DINOLoss

    assert dist.init_distributed(backend="gloo") and dist.world_size() == world
    loss = DINOLoss(3, center_momentum=0.5)
    # rank r contributes r+1 rows of value (r+1): the centre must see both ranks' rows
    t = torch.full((rank + 1, 3), float(rank + 1))
    loss.update_center([t])
    gathered = dist.all_gather_variable(torch.arange(rank + 1))
    out[rank] = (loss.center.tolist(), gathered.tolist(), dist.broadcast_object({"r": rank}))
    dist.cleanup()


def test_centre_is_all_reduced_over_gloo_ranks():
    res = _spawn(_centre_worker)
    # global mean of rows: (1*1 + 2*2) / 3 = 5/3; centre = 0.5 * 0 + 0.5 * 5/3
    for r in (0, 1):
        centre, gathered, obj = res[r]
        assert centre[0] == pytest.approx([5 / 6] * 3)
        assert gathered == [0, 0, 1]
        assert obj == {"r": 0}


def _backend_worker(rank, world, port, out):
    _join(rank, world, port, SSRL_LAB_DIST_BACKEND="cpu:gloo")
    from ssrl_lab.train import distributed as dist

    assert dist.init_distributed()
    out[rank] = tdist.get_backend()
    dist.cleanup()


def test_backend_override_from_environment():
    """SSRL_LAB_DIST_BACKEND replaces the default backend ('gloo' on this CPU machine)."""
    assert _spawn(_backend_worker) == {0: "cpu:gloo", 1: "cpu:gloo"}


@pytest.mark.slow
def test_torchrun_two_process_dino_smoke(smoke_corpus, tmp_path):
    run_dir = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "ssrl_lab.train.dino", "--profile", "smoke", "--corpus", str(smoke_corpus), "--run-dir", str(run_dir),
           "--quiet", "epochs=1", "eval_every=0", "device=cpu", "max_steps_per_epoch=2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["system"] == "dino" and 0 <= res["eer"] <= 100
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["steps"] == 2  # only rank 0 wrote, once
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1  # only rank 0 tracked (TensorBoard)
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert len(ck["rng"]) == 2  # both ranks' generator states are kept


def test_cli_reports_config_errors(smoke_corpus, tmp_path):
    p = subprocess.run([sys.executable, "-m", "ssrl_lab.train.dino", "--profile", "smoke", "--corpus", str(smoke_corpus),
                        "--run-dir", str(tmp_path / "x"), "bogus_key=1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "bogus_key" in p.stderr and "Traceback" not in p.stderr
