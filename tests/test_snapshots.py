"""Teacher snapshots: the training set's embeddings at evaluation epochs, without changing training."""
import random

import numpy as np
import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.train.snapshots import SnapshotConfig, list_snapshots, save_teacher_snapshot, snapshot_path, snapshot_rows
from ssrl_lab.utils.io import read_jsonl


def _strip(rec):
    """A metrics line without timings and without the snapshot's own entry."""
    out = {}
    for k, v in rec.items():
        if k.startswith("seconds") or k in ("epoch_end_share", "teacher_share", "snapshot"):
            continue
        out[k] = _strip(v) if isinstance(v, dict) else v
    return out


def _states():
    return (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())


def _same(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_config_validation_and_nesting():
    from ssrl_lab.train.dino import DINOConfig
    from ssrl_lab.train.ssrl import SSRLConfig

    with pytest.raises(ConfigError, match="max_utterances"):
        SnapshotConfig(max_utterances=-1)
    with pytest.raises(ConfigError, match="chunk_s"):
        SnapshotConfig(chunk_s=0)
    with pytest.raises(ConfigError, match="bogus for SnapshotConfig"):
        SSRLConfig.profile("smoke", snapshots={"bogus": 1})
    cfg = SSRLConfig.profile("smoke", snapshots={"max_utterances": 7})
    assert cfg.snapshots.max_utterances == 7 and cfg.snapshots.enabled
    assert cfg.to_dict()["snapshots"]["max_utterances"] == 7
    assert DINOConfig.profile("smoke").snapshots.enabled


def test_rows_are_a_fixed_capped_subset():
    assert snapshot_rows(10, 0).tolist() == list(range(10))
    assert snapshot_rows(10, 20).tolist() == list(range(10))
    a, b = snapshot_rows(1000, 50, seed=3), snapshot_rows(1000, 50, seed=3)
    assert a.size == 50 and np.array_equal(a, b) and np.all(np.diff(a) > 0)


def test_snapshot_restores_every_rng_state_and_reuses_its_file(smoke_corpus, tmp_path):
    from ssrl_lab.data.corpus import open_corpus
    from ssrl_lab.eval.embed import extract_embeddings
    from ssrl_lab.models import EncoderConfig, SpeakerNet

    torch.manual_seed(0)
    model = SpeakerNet(EncoderConfig.preset("micro"))
    table = open_corpus(smoke_corpus).train
    cfg = SnapshotConfig(max_utterances=20, chunk_s=1.0, batch_size=8)

    # the extraction alone moves torch's generator (the DataLoader draws a seed): what the snapshot undoes
    before = _states()
    extract_embeddings(model, table.subset(np.arange(4)), progress=False, chunk_s=1.0)
    assert not _same(before, _states())

    before = _states()
    out = save_teacher_snapshot(model, table, tmp_path, 3, cfg, "cpu")
    assert _same(before, _states())
    assert out["n_utterances"] == 20
    p = snapshot_path(tmp_path, 3)
    z = np.load(p)
    assert z["emb"].shape[0] == 20 and np.isfinite(z["emb"]).all()
    assert z["utt_id"].tolist() == [table.utt_id[i] for i in snapshot_rows(len(table), 20)]
    mtime = p.stat().st_mtime_ns
    save_teacher_snapshot(model, table, tmp_path, 3, cfg, "cpu")  # same model: the file is reused
    assert p.stat().st_mtime_ns == mtime
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    save_teacher_snapshot(model, table, tmp_path, 3, cfg, "cpu")  # another model: recomputed
    assert p.stat().st_mtime_ns != mtime
    assert list(list_snapshots(tmp_path)) == [3]
    assert save_teacher_snapshot(model, table, tmp_path, 4, SnapshotConfig(enabled=False), "cpu") is None
    assert list(list_snapshots(tmp_path)) == [3]


@pytest.mark.slow
def test_ssrl_metrics_are_identical_with_and_without_snapshots(smoke_corpus, smoke_dino, tmp_path):
    from ssrl_lab.train.ssrl import SSRLConfig, train

    def run(name, enabled):
        # SpecAugment draws from torch's global generator every step: a snapshot that moved it would
        # change the second epoch
        cfg = SSRLConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(tmp_path / name),
                                 dino_run=str(smoke_dino), device="cpu", eval_every=1, spec_augment=True,
                                 snapshots={"enabled": enabled, "chunk_s": 1.0})
        res = train(cfg, progress=False)
        return res, read_jsonl(tmp_path / name / "metrics.jsonl"), np.load(tmp_path / name / "history.npz")

    on, m_on, h_on = run("on", True)
    off, m_off, h_off = run("off", False)
    assert [_strip(r) for r in m_on] == [_strip(r) for r in m_off]
    assert on["eer"] == off["eer"] and on["eer_all_pairs"] == off["eer_all_pairs"]
    for key in ("labels", "p_clean", "loss"):
        assert np.array_equal(h_on[key], h_off[key], equal_nan=True), key
    assert list(list_snapshots(tmp_path / "on")) == [1, 2] and not list_snapshots(tmp_path / "off")
    assert [r["snapshot"]["n_utterances"] for r in m_on if r.get("stage") == "ssrl"] == [48, 48]


@pytest.mark.slow
def test_dino_metrics_are_identical_with_and_without_snapshots(smoke_corpus, tmp_path):
    from ssrl_lab.train.dino import DINOConfig, train

    def run(name, enabled):
        cfg = DINOConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(tmp_path / name), device="cpu",
                                 eval_every=1, spec_augment=True, snapshots={"enabled": enabled, "chunk_s": 1.0})
        train(cfg, progress=False)
        return read_jsonl(tmp_path / name / "metrics.jsonl")

    m_on, m_off = run("on", True), run("off", False)
    assert [_strip(r) for r in m_on] == [_strip(r) for r in m_off]
    assert list(list_snapshots(tmp_path / "on")) == [1, 2]
