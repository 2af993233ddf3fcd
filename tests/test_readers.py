import logging
import os
import time

import numpy as np
import pytest

from ssrl_lab.data import readers
from ssrl_lab.data.readers import read_kaldi, read_voxceleb


def test_voxceleb_tree_all_formats(voxceleb_tree):
    root, utts = voxceleb_tree()
    t = read_voxceleb(root)
    assert t.utt_id == utts
    assert {u.rsplit(".", 1)[1] for u in t.utt_id} == {"wav", "flac", "m4a"}
    assert t.speaker[0] == "id10001" and t.session[0] == "vid00x"
    assert set(t.speaker) == {"id10001", "id10002"}
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in t.path)
    # durations grow by 0.05 s per file in the order the tree was built (= sorted order here)
    np.testing.assert_allclose(t.duration, 0.4 + 0.05 * np.arange(len(utts)), atol=2e-3)
    assert (root / ".ssrl_table.tsv").is_file()


def test_cache_reuse_and_invalidation(voxceleb_tree, write_wave, tone, monkeypatch):
    root, utts = voxceleb_tree(n_speakers=2, n_videos=1, n_utts=2)
    calls = []
    real = readers.audio_duration
    monkeypatch.setattr(readers, "audio_duration", lambda p: calls.append(p) or real(p))
    t1 = read_voxceleb(root)
    assert len(calls) == 4
    calls.clear()
    t2 = read_voxceleb(root)
    assert calls == [] and t2.utt_id == t1.utt_id
    np.testing.assert_array_equal(t2.duration, t1.duration)
    # add a file: rescanned, only the changed video dir re-reads headers
    time.sleep(0.01)
    write_wave(root / "id10001/vid00x/00009.wav", tone(0.7), 16000)
    t3 = read_voxceleb(root)
    assert len(t3) == 5 and "id10001/vid00x/00009.wav" in t3.utt_id
    assert sorted(os.path.basename(p) for p in calls) == ["00001.wav", "00002.flac", "00009.wav"]
    assert abs(t3.duration[t3.index_of("id10001/vid00x/00009.wav")] - 0.7) < 1e-3
    # a new speaker directory is seen too; removing a file drops it
    calls.clear()
    write_wave(root / "id10003/new/00001.flac", tone(0.3), 16000)
    os.remove(root / "id10002/vid10x/00001.m4a")
    t4 = read_voxceleb(root)
    assert "id10003/new/00001.flac" in t4.utt_id and "id10002/vid10x/00001.m4a" not in t4.utt_id
    assert len(t4) == 5
    # refresh re-reads everything; cache=False neither reads nor writes the cache
    calls.clear()
    read_voxceleb(root, refresh=True)
    assert len(calls) == 5
    calls.clear()
    read_voxceleb(root, cache=False)
    assert len(calls) == 5


def test_cache_dir_when_root_not_writable(voxceleb_tree, tmp_path):
    root, utts = voxceleb_tree(n_speakers=1, n_videos=1, n_utts=2, exts=("flac",))
    cache = tmp_path / "cache"
    t = read_voxceleb(root, cache_dir=cache)
    assert not (root / ".ssrl_table.tsv").exists()
    written = list((cache / "tables").glob("*.tsv"))
    assert len(written) == 1 and written[0].name.startswith("vox-")
    assert read_voxceleb(root, cache_dir=cache).utt_id == t.utt_id
    if os.geteuid() != 0:  # root ignores permissions
        os.chmod(root, 0o555)
        try:
            monkey_cache = tmp_path / "home_cache"
            os.environ["SSRL_LAB_CACHE"] = str(monkey_cache)
            read_voxceleb(root)
            assert list((monkey_cache / "tables").glob("*.tsv"))
        finally:
            os.environ.pop("SSRL_LAB_CACHE")
            os.chmod(root, 0o755)


def test_layout_errors_and_strays(tmp_path, write_wave, tone, caplog):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        read_voxceleb(tmp_path / "nope")
    (tmp_path / "emptyroot").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        read_voxceleb(tmp_path / "emptyroot")
    root = tmp_path / "r"
    write_wave(root / "id1/v/00001.wav", tone(0.2), 16000)
    write_wave(root / "id1/stray.wav", tone(0.2), 16000)
    (root / "id1/v/notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING):
        t = read_voxceleb(root, cache=False)
    assert t.utt_id == ["id1/v/00001.wav"]
    assert "1 audio entries outside" in caplog.text


def test_corrupt_file_kept_with_nan_duration(voxceleb_tree):
    root, utts = voxceleb_tree(n_speakers=1, n_videos=1, n_utts=1, exts=("wav",))
    (root / "id10001/vid00x/00002.wav").write_bytes(b"RIFF....garbage")
    t = read_voxceleb(root, cache=False)
    assert len(t) == 2 and np.isnan(t.duration[1]) and np.isfinite(t.duration[0])


def _kaldi_dir(tmp_path, write_wave, tone):
    d = tmp_path / "kaldi"
    d.mkdir()
    write_wave(tmp_path / "audio/sessA/a.wav", tone(0.5), 16000)
    write_wave(tmp_path / "audio/sessB/b.flac", tone(0.25, 8000), 8000)
    (d / "wav.scp").write_text(f"uttA {tmp_path}/audio/sessA/a.wav\n\nuttB ../audio/sessB/b.flac\n")
    return d


def test_kaldi_dir(tmp_path, write_wave, tone):
    d = _kaldi_dir(tmp_path, write_wave, tone)
    t = read_kaldi(d)
    assert t.utt_id == ["uttA", "uttB"] and t.speaker == [None, None]
    assert t.session == ["sessA", "sessB"]
    np.testing.assert_allclose(t.duration, [0.5, 0.25], atol=1e-3)
    (d / "utt2spk").write_text("uttA spk1\nuttB spk2\n")
    (d / "utt2dur").write_text("uttA 9.5\n")
    t = read_kaldi(d)
    assert t.speaker == ["spk1", "spk2"]
    np.testing.assert_allclose(t.duration, [9.5, 0.25], atol=1e-3)  # utt2dur wins, header for the rest


def test_kaldi_refusals(tmp_path, write_wave, tone):
    d = _kaldi_dir(tmp_path, write_wave, tone)
    scp = d / "wav.scp"
    good = scp.read_text()
    scp.write_text(good + "uttC sox x.wav -t wav - |\n")
    with pytest.raises(ValueError, match=r"wav.scp:4: piped command"):
        read_kaldi(d)
    scp.write_text(good + "uttC feats.ark:1234\n")
    with pytest.raises(ValueError, match="archive"):
        read_kaldi(d)
    scp.write_text(good + "uttC /no/such.wav\nuttD /no/other.wav\n")
    with pytest.raises(FileNotFoundError, match=r"2 audio file\(s\) missing: line 4: uttC"):
        read_kaldi(d)
    assert read_kaldi(d, on_missing="skip").utt_id == ["uttA", "uttB"]
    scp.write_text(good)
    (d / "utt2spk").write_text("uttA spk1\n")
    with pytest.raises(ValueError, match="no speaker for 1"):
        read_kaldi(d)
    with pytest.raises(FileNotFoundError, match="wav.scp not found"):
        read_kaldi(tmp_path)
