import numpy as np
import pytest
import torch

from ssrl_lab.data.audio import AudioError, write_audio
from ssrl_lab.data.datasets import LabelledCropDataset, MultiCropDataset, PairCropDataset, WaveCache
from ssrl_lab.data.table import UtteranceTable
from ssrl_lab.train.loader import ShardedSampler, collate, make_loader


@pytest.fixture
def table(tmp_path):
    rows = []
    rng = np.random.default_rng(0)
    for i, dur in enumerate([1.5, 2.5, 0.6, 3.0]):
        w = (0.1 * rng.standard_normal(int(dur * 16000))).astype(np.float32)
        p = tmp_path / f"u{i}.flac"
        write_audio(p, w)
        rows.append((f"u{i}.flac", f"s{i % 2}", "a", str(p), dur))
    return UtteranceTable.from_rows(rows)


class AddOne:
    """A deterministic 'augmenter' that records the random draw it got."""

    def __call__(self, wave, rng):
        return wave + np.float32(rng.uniform(1, 2))


def test_multicrop_shapes_independence_and_reproducibility(table):
    ds = MultiCropDataset(table, n_global=2, global_s=1.0, n_local=3, local_s=0.5, augmenter=AddOne(), seed=3)
    item = ds[1]
    assert item["index"] == 1
    assert [v.shape[0] for v in item["views"]] == [16000, 16000, 8000, 8000, 8000]
    assert all(v.dtype == torch.float32 for v in item["views"])
    # independent crops / augmentations: the two global views differ
    assert not torch.allclose(item["views"][0], item["views"][1])
    # same (seed, epoch, index) -> same item; another epoch -> another item
    again = ds[1]
    assert all(torch.equal(a, b) for a, b in zip(item["views"], again["views"]))
    ds.set_epoch(1)
    other = ds[1]
    assert not torch.equal(item["views"][0], other["views"][0])
    # a short utterance (0.6 s) is padded to the crop length
    assert ds[2]["views"][0].shape[0] == 16000


def test_preload_cache_matches_file_reads(table):
    cache = WaveCache(table)
    assert cache.nbytes == 2 * int(round(sum(table.duration) * 16000))
    a = MultiCropDataset(table, 2, 1.0, 1, 0.5, None, seed=0, preload=cache)
    w = cache.get(1)
    assert w.shape[0] == 40000
    item = a[1]
    # every view is a contiguous slice of the cached waveform
    for v in item["views"]:
        v = v.numpy()
        starts = np.flatnonzero(np.isclose(w, v[0], atol=1e-6))
        assert any(np.allclose(w[s:s + len(v)], v, atol=1e-4) for s in starts if s + len(v) <= len(w))


def test_labelled_and_pair_datasets(table):
    lab = LabelledCropDataset(table, np.array([5, 6, 7, 8]), crop_s=0.5, augmenter=None, seed=0)
    it = lab[3]
    assert it["label"] == 8 and it["index"] == 3 and it["wave"].shape == (8000,)
    with pytest.raises(ValueError):
        LabelledCropDataset(table, np.zeros(3), crop_s=0.5)
    pair = PairCropDataset(table, student_s=0.5, teacher_s=2.0, augmenter=AddOne(), seed=0)
    it = pair[3]
    assert it["student"].shape == (8000,) and it["teacher"].shape == (32000,)
    assert it["student"].min() >= 0.5  # augmented (offset by >= 1 minus small noise)
    assert it["teacher"].abs().max() < 1.0  # clean


def test_bad_file_raises_with_path_or_is_substituted(table, tmp_path):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio")
    t = UtteranceTable.from_rows([(u, s, ss, p, d) for u, s, ss, p, d in zip(
        table.utt_id, table.speaker, table.session, table.path, table.duration)] + [("bad.flac", "s0", "a", str(bad), 2.0)])
    ds = LabelledCropDataset(t, np.arange(5), crop_s=0.5, seed=0)
    with pytest.raises(AudioError, match="bad.flac"):
        ds[4]
    ds = LabelledCropDataset(t, np.arange(5), crop_s=0.5, seed=0, skip_bad=True)
    it = ds[4]
    assert it["index"] != 4 and it["label"] == it["index"]
    assert ds.skip_log.total == 1


def test_sharded_sampler_partitions_and_loader_is_worker_independent(table):
    parts = [ShardedSampler(10, seed=1, rank=r, world=3).indices() for r in range(3)]
    assert all(len(p) == 4 for p in parts)
    assert set(sum(parts, [])) == set(range(10))
    s = ShardedSampler(10, seed=1, rank=0, world=1)
    s.set_epoch(0)
    e0 = s.indices()
    s.set_epoch(1)
    assert s.indices() != e0 and sorted(s.indices()) == list(range(10))
    ds = MultiCropDataset(table, 1, 0.5, 1, 0.25, AddOne(), seed=0)
    b0 = [b for b in make_loader(ds, 2, epoch=2, seed=0, num_workers=0)]
    b2 = [b for b in make_loader(ds, 2, epoch=2, seed=0, num_workers=2)]
    assert len(b0) == 2 and b0[0]["views"][0].shape == (2, 8000)
    for x, y in zip(b0, b2):
        assert torch.equal(x["index"], y["index"])
        assert all(torch.equal(a, b) for a, b in zip(x["views"], y["views"]))
    c = collate([{"wave": torch.zeros(3), "label": 1, "w": 0.5}, {"wave": torch.ones(3), "label": 2, "w": 1.0}])
    assert c["wave"].shape == (2, 3) and c["label"].tolist() == [1, 2] and c["w"].dtype == torch.float32
