"""Embedding extraction (full length, chunked, capped), its cache, and evaluate()."""

import numpy as np
import pytest
import torch

from ssrl_lab.data.audio import AudioError, load_audio, write_audio
from ssrl_lab.data.table import UtteranceTable
from ssrl_lab.data.trials import TrialList
from ssrl_lab.eval.embed import extract_embeddings, segments
from ssrl_lab.eval.evaluate import evaluate

SR = 16000
LENGTHS_S = [0.5, 1.0, 1.0, 2.3, 3.7, 1.6]


class TinyNet(torch.nn.Module):
    """Fixed strided conv + ReLU + mean pooling over time: (B, T) -> (B, 6); counts forwards."""

    emb_dim = 6

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv1d(1, 6, kernel_size=64, stride=32)
        self.calls = 0
        self.batch_sizes = []

    def forward(self, wave):
        self.calls += 1
        self.batch_sizes.append(wave.shape[0])
        return torch.relu(self.conv(wave[:, None, :])).mean(dim=2)


def _one(model, wave):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(wave))[None]).numpy()[0]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    rows = []
    for i, d in enumerate(LENGTHS_S):
        n = int(d * SR)
        t = np.arange(n) / SR
        wave = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.normal(size=n)
        p = write_audio(root / f"spk{i % 3}" / f"u{i}.flac", wave)
        rows.append((f"spk{i % 3}/u{i}.flac", f"spk{i % 3}", f"s{i}", str(p), d))
    return UtteranceTable.from_rows(rows)


def test_segments():
    assert segments(100, None, False) == [(0, 100)]
    assert segments(30, 40, True) == [(0, 40)]
    assert segments(30, 40, False) == [(0, 30)]
    assert segments(100, 40, True) == [(0, 40), (40, 40), (60, 40)]
    assert segments(80, 40, True) == [(0, 40), (40, 40)]


def test_full_length_is_exact_and_batch_independent(table):
    model = TinyNet()
    emb = extract_embeddings(model, table, batch_size=8, progress=False)
    assert emb.shape == (6, 6) and emb.dtype == np.float32
    # the two 1.0 s utterances went through together; nothing was padded
    assert sorted(model.batch_sizes) == [1, 1, 1, 1, 2]
    for i, p in enumerate(table.path):
        np.testing.assert_allclose(emb[i], _one(model, load_audio(p)), rtol=1e-5, atol=1e-6)
    alone = extract_embeddings(model, table.subset([2]), batch_size=8, progress=False)
    np.testing.assert_allclose(alone[0], emb[2], rtol=1e-5, atol=1e-6)
    one_by_one = extract_embeddings(model, table, batch_size=1, progress=False)
    np.testing.assert_allclose(one_by_one, emb, rtol=1e-5, atol=1e-6)
    assert model.training  # mode restored


def test_chunked_embeddings(table):
    model = TinyNet()
    emb = extract_embeddings(model, table, batch_size=4, chunk_s=1.0, progress=False)
    assert emb.shape == (6, 6)
    # 0.5 + 1 + 1 + 3 + 4 + 2 chunks of 1 s in batches of at most 4
    assert sum(model.batch_sizes) == 12 and max(model.batch_sizes) == 4
    w = load_audio(table.path[3])  # 2.3 s: chunks at 0, 1.0, 1.3 s
    want = np.mean([_one(model, w[s : s + SR]) for s in (0, SR, w.size - SR)], axis=0)
    np.testing.assert_allclose(emb[3], want, rtol=1e-5, atol=1e-6)
    w0 = load_audio(table.path[0])  # 0.5 s: wrap-padded to 1 s
    np.testing.assert_allclose(emb[0], _one(model, np.resize(w0, SR)), rtol=1e-5, atol=1e-6)
    # batch independence in chunked mode
    alone = extract_embeddings(model, table.subset([4]), batch_size=4, chunk_s=1.0, progress=False)
    np.testing.assert_allclose(alone[0], emb[4], rtol=1e-5, atol=1e-6)


def test_long_files_capped_by_max_len(table):
    model = TinyNet()
    emb = extract_embeddings(model, table, max_len_s=1.5, progress=False)
    w = load_audio(table.path[4])  # 3.7 s -> 1.5 s pieces at 0, 1.5, 2.2 s
    n = int(1.5 * SR)
    want = np.mean([_one(model, w[s : s + n]) for s in (0, n, w.size - n)], axis=0)
    np.testing.assert_allclose(emb[4], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb[1], _one(model, load_audio(table.path[1])), rtol=1e-5, atol=1e-6)


def test_cache_reuse_and_invalidation(table, tmp_path):
    cache = tmp_path / "emb.npz"
    model = TinyNet()
    first = extract_embeddings(model, table, cache_path=cache, cache_key="ckpt-A", progress=False)
    assert cache.is_file() and model.calls > 0
    z = np.load(cache)
    assert z["utt_id"].tolist() == table.utt_id
    model.calls = 0
    again = extract_embeddings(model, table, cache_path=cache, cache_key="ckpt-A", progress=False)
    assert model.calls == 0
    np.testing.assert_array_equal(again, first)
    extract_embeddings(model, table, cache_path=cache, cache_key="ckpt-B", progress=False)
    assert model.calls > 0
    model.calls = 0
    extract_embeddings(model, table, cache_path=cache, cache_key="ckpt-B", chunk_s=1.0, progress=False)
    assert model.calls > 0  # other settings
    model.calls = 0
    extract_embeddings(model, table.subset([0, 1]), cache_path=cache, cache_key="ckpt-B", chunk_s=1.0,
                       progress=False)
    assert model.calls > 0  # other utterances


def test_cache_without_key_follows_weights(table, tmp_path):
    cache = tmp_path / "emb.npz"
    model = TinyNet()
    a = extract_embeddings(model, table, cache_path=cache, progress=False)
    model.calls = 0
    extract_embeddings(model, table, cache_path=cache, progress=False)
    assert model.calls == 0
    with torch.no_grad():
        model.conv.bias += 0.1
    b = extract_embeddings(model, table, cache_path=cache, progress=False)
    assert model.calls > 0 and not np.allclose(a, b)


def test_bad_file_raises_or_is_skipped(table, tmp_path):
    bad = tmp_path / "bad.flac"  # never written: load_audio raises AudioError("missing")
    rows = [(u, s, ss, p, d) for u, s, ss, p, d in zip(table.utt_id, table.speaker, table.session, table.path,
                                                        table.duration)][:2]
    t2 = UtteranceTable.from_rows(rows + [("bad.flac", "spk9", "s9", str(bad), 1.0)])
    with pytest.raises(AudioError, match="bad.flac"):
        extract_embeddings(TinyNet(), t2, progress=False)
    emb = extract_embeddings(TinyNet(), t2, progress=False, skip_bad=True)
    assert np.isnan(emb[2]).all() and np.isfinite(emb[:2]).all()


def test_argument_errors(table):
    with pytest.raises(ValueError, match="chunk_s"):
        extract_embeddings(TinyNet(), table, chunk_s=0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        extract_embeddings(TinyNet(), table, batch_size=0, progress=False)


class _Corpus:
    def __init__(self, test, trials):
        self.test, self.trials = test, trials


def test_evaluate_returns_percent_metrics(table, tmp_path):
    model = TinyNet()
    trials = TrialList(label=[1, 0, 1, 0, 0, 1], enroll=[0, 0, 1, 1, 2, 2], test=[3, 1, 4, 2, 3, 5])
    out = evaluate(model, _Corpus(table, trials), cache_path=tmp_path / "e.npz", cache_key="k",
                   return_scores=True)
    for key in ("eer", "mindcf_0.01", "mindcf_0.05", "eer_all_pairs", "mindcf_0.01_all_pairs",
                "mindcf_0.05_all_pairs", "n_trials", "n_pairs", "scores", "labels"):
        assert key in out
    assert out["n_trials"] == 6 and out["n_pairs"] == 15
    assert 0.0 <= out["eer"] <= 100.0 and 0.0 <= out["eer_all_pairs"] <= 100.0
    emb = extract_embeddings(model, table, progress=False)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(out["scores"], np.sum(x[trials.enroll] * x[trials.test], axis=1), atol=1e-5)
    np.testing.assert_array_equal(out["labels"], trials.label)
    no_pairs = evaluate(model, _Corpus(table, trials), all_pairs=False)
    assert no_pairs["eer_all_pairs"] is None and no_pairs["eer"] == pytest.approx(out["eer"])


def test_model_fingerprint_handles_zero_dim_buffers_and_changes_with_weights():
    from ssrl_lab.eval.embed import model_fingerprint

    net = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 1), torch.nn.BatchNorm1d(3))  # num_batches_tracked is 0-dim
    a = model_fingerprint(net)
    assert a == model_fingerprint(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert model_fingerprint(net) != a


class _FlagNet(TinyNet):
    """Records cuDNN's benchmark flag as seen during each forward pass."""

    def forward(self, wave):
        self.flags = getattr(self, "flags", []) + [torch.backends.cudnn.benchmark]
        return super().forward(wave)


def test_cudnn_benchmark_off_for_whole_utterances_and_restored(table, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    net = _FlagNet()
    extract_embeddings(net, table, progress=False)  # whole utterances: a new shape per length
    assert net.flags and not any(net.flags)
    assert torch.backends.cudnn.benchmark is True  # restored
    net.flags = []
    extract_embeddings(net, table, chunk_s=1.0, progress=False)  # fixed chunks: one shape
    assert net.flags and all(net.flags)


def test_resolve_device_sets_cudnn_benchmark_only_for_cuda(monkeypatch):
    from ssrl_lab.train.devices import resolve_device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert resolve_device("cpu", cudnn_benchmark=True).type == "cpu"
    assert torch.backends.cudnn.benchmark is False
