"""The packed corpus format (issue 15): identical samples to the files, resumable and atomic
packing per shard, refusal to overwrite, bad files, m4a, truncated shards."""
import json
import shutil

import numpy as np
import pytest

from ssrl_lab.data import pack
from ssrl_lab.data.audio import load_audio, write_m4a
from ssrl_lab.data.augment import AugmentConfig, Augmenter
from ssrl_lab.data.corpus import open_corpus
from ssrl_lab.data.datasets import MultiCropDataset, PairCropDataset


@pytest.fixture(scope="module")
def packed(smoke_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "smoke-packed"
    rep = pack.pack_corpus(smoke_corpus, out, shard_mb=0.5)
    return out, rep


def test_packed_and_unpacked_readers_give_identical_samples_for_every_utterance(smoke_corpus, packed):
    out, rep = packed
    a, b = open_corpus(smoke_corpus), open_corpus(out)
    assert rep["splits"]["train"]["shards"] > 1 and rep["splits"]["train"]["skipped"] == 0
    assert len(b.trials) == len(a.trials) and b.trials.label.tolist() == a.trials.label.tolist()
    splits = ("train", "test") + (("dev",) if a.dev is not None else ())
    assert set(rep["splits"]) == set(splits)
    if a.dev is not None and a.dev_trials is not None:
        assert b.dev_trials.label.tolist() == a.dev_trials.label.tolist()
    for split in splits:
        ta, tb = getattr(a, split), getattr(b, split)
        assert tb.utt_id == ta.utt_id and tb.speaker == ta.speaker and tb.session == ta.session
        for i in range(len(ta)):
            wa, wb = load_audio(ta.path[i]), load_audio(tb.path[i])
            assert wb.dtype == np.float32 and np.array_equal(wa, wb), (split, ta.utt_id[i])
            assert tb.duration[i] == pytest.approx(len(wa) / 16000)
            # partial reads (what the datasets' crops do) select the same samples too
            for start, dur in ((0.37, 0.5), (0.0, 1.0), (None, 0.25), (tb.duration[i] - 0.1, 1.0)):
                np.testing.assert_array_equal(load_audio(ta.path[i], start_s=start, dur_s=dur),
                                              load_audio(tb.path[i], start_s=start, dur_s=dur))


def test_dataset_items_are_identical_from_files_and_from_shards(smoke_corpus, packed):
    ta, tb = open_corpus(smoke_corpus).train, open_corpus(packed[0]).train
    aug = AugmentConfig(bank_clips=2, bank_clip_s=1.0)
    for make in (lambda t: MultiCropDataset(t, 2, 1.0, 2, 0.5, Augmenter(aug, babble_table=t, seed=0), seed=3),
                 lambda t: PairCropDataset(t, 1.0, 2.0, None, seed=3)):
        da, db = make(ta), make(tb)
        da.set_epoch(2), db.set_epoch(2)
        for i in (0, 7, len(ta) - 1):
            xa, xb = da[i], db[i]
            for k in xa:
                va, vb = xa[k], xb[k]
                if k == "index":
                    assert va == vb
                elif isinstance(va, list):
                    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(va, vb))
                else:
                    assert np.array_equal(va.numpy(), vb.numpy())


def test_packing_is_resumable_per_shard_and_refuses_to_overwrite(smoke_corpus, packed, tmp_path, monkeypatch):
    out = tmp_path / "p"
    real = pack.pack_shard
    calls = []

    def failing(split_dir, k, rows):
        calls.append((split_dir, k))
        if k == 2:
            raise KeyboardInterrupt  # interrupted while writing shard 2 of the train split
        return real(split_dir, k, rows)

    monkeypatch.setattr(pack, "pack_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        pack.pack_corpus(smoke_corpus, out, shard_mb=0.5)
    assert not (out / "corpus.json").exists() and not (out / "train" / "index.tsv").exists()
    assert (out / "train" / "shard-00001.tsv").is_file() and not (out / "train" / "shard-00002.pcm16").exists()
    assert not list((out / "train").glob(".*tmp"))  # no half-written shard left behind
    calls.clear()
    monkeypatch.setattr(pack, "pack_shard", lambda *a: (calls.append(a[1]), real(*a))[1])
    before = (out / "train" / "shard-00000.pcm16").stat().st_mtime_ns
    pack.pack_corpus(smoke_corpus, out, shard_mb=0.5)
    assert 0 not in calls[:1] and calls[0] == 2  # shards 0 and 1 of train were not packed again
    assert (out / "train" / "shard-00000.pcm16").stat().st_mtime_ns == before
    ref = packed[0]
    for split in ("train", "test"):
        assert (out / split / "index.tsv").read_text() == (ref / split / "index.tsv").read_text()
        for f in sorted((ref / split).glob("*.pcm16")):
            assert (out / split / f.name).read_bytes() == f.read_bytes()

    with pytest.raises(pack.PackError, match="finished packed corpus"):
        pack.pack_corpus(smoke_corpus, out, shard_mb=0.5)
    (out / "corpus.json").unlink()
    with pytest.raises(pack.PackError, match="other settings"):
        pack.pack_corpus(smoke_corpus, out, shard_mb=1.0)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(pack.PackError, match="not empty"):
        pack.pack_corpus(smoke_corpus, other)
    assert (other / "keep.txt").read_text() == "precious"
    assert pack.main(["--corpus", str(smoke_corpus), "--out", str(other)]) == 2


def test_bad_utterances_are_skipped_and_counted(smoke_corpus, tmp_path):
    corpus = tmp_path / "c"
    shutil.copytree(smoke_corpus, corpus)
    for tsv in ("train.tsv", "test.tsv"):  # point the copy's tables at the copy's files
        f = corpus / tsv
        f.write_text(f.read_text().replace(str(smoke_corpus.resolve()), str(corpus.resolve())))
    victim = sorted((corpus / "train").rglob("*.flac"))[3]
    victim.write_bytes(b"garbage, not audio")
    rep = pack.pack_corpus(corpus, tmp_path / "p", splits=["train"])
    assert rep["splits"]["train"]["skipped"] == 1
    assert rep["splits"]["train"]["skipped_now"][0][1] == "corrupt"
    c = open_corpus(tmp_path / "p")
    assert len(c.train) == len(open_corpus(corpus).train) - 1
    assert c.spec["test"]["format"] == "table" and len(c.test) == 48  # the unpacked split is kept as it was
    assert json.loads((tmp_path / "p" / "pack.json").read_text())["report"]["splits"]["train"]["skipped"] == 1


def test_truncated_or_missing_shards_are_clear_errors(packed, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(packed[0], out)
    shard = sorted((out / "train").glob("*.pcm16"))[-1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        open_corpus(out)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_corpus(out)
    with pytest.raises(Exception, match="missing"):
        load_audio(f"{shard}@0:100")


def test_m4a_is_decoded_once_into_the_shards(tmp_path):
    pytest.importorskip("av")
    from ssrl_lab.data.corpus import write_corpus_json

    rng = np.random.default_rng(0)
    root = tmp_path / "vox"
    for spk in ("id00001", "id00002"):
        d = root / spk / "vid1"
        d.mkdir(parents=True)
        for u in range(2):
            t = np.arange(24000) / 16000
            wave = (0.3 * np.sin(2 * np.pi * (150 + 40 * u) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            write_m4a(d / f"0000{u + 1}.m4a", wave)
    (tmp_path / "trials.txt").write_text("1 id00001/vid1/00001.m4a id00001/vid1/00002.m4a\n")
    write_corpus_json(tmp_path, "m4a", {"format": "voxceleb", "path": "vox", "cache": False},
                      {"format": "voxceleb", "path": "vox", "cache": False})
    pack.pack_corpus(tmp_path, tmp_path / "packed")
    a, b = open_corpus(tmp_path), open_corpus(tmp_path / "packed")
    assert b.train.utt_id == a.train.utt_id and b.train.session == a.train.session
    for pa, pb in zip(a.train.path, b.train.path):
        wa, wb = load_audio(pa), load_audio(pb)
        assert wa.shape == wb.shape and np.abs(wa - wb).max() <= 1 / 32768 + 1e-7  # int16 quantisation only
