import json

import numpy as np
import pytest

from ssrl_lab.data.corpus import CorpusError, open_corpus, write_corpus_json
from ssrl_lab.data.readers import read_voxceleb
from ssrl_lab.data.table import UtteranceTable
from ssrl_lab.data.trials import TrialError, write_trials


def _table_corpus(tmp_path, write_wave, tone):
    d = tmp_path / "corp"
    rows = []
    for i, (spk, split) in enumerate([("s1", "train"), ("s2", "train"), ("s1", "test"), ("s2", "test")]):
        rel = f"{split}/{spk}/u{i}.flac"
        write_wave(d / rel, tone(0.2 + 0.1 * i), 16000)
        rows.append((rel, spk, f"sess{i}", rel, 0.2 + 0.1 * i))  # relative audio paths
    UtteranceTable.from_rows(rows[:2]).save(d / "train.tsv")
    test = UtteranceTable.from_rows(rows[2:])
    test.save(d / "test.tsv")
    write_trials(d / "trials.txt", test, [1, 0], [0, 0], [0, 1])
    return d


def test_table_corpus(tmp_path, write_wave, tone):
    d = _table_corpus(tmp_path, write_wave, tone)
    p = write_corpus_json(d, "tiny", "train.tsv", {"format": "table", "path": "test.tsv"}, "trials.txt",
                          description="two speakers")
    spec = json.loads(p.read_text())
    assert spec["train"] == {"format": "table", "path": "train.tsv"} and spec["description"] == "two speakers"
    c = open_corpus(d)
    assert c.name == "tiny" and c.root == d.resolve()
    assert len(c.train) == 2 and len(c.test) == 2 and len(c.trials) == 2
    assert c.test.path[0] == str((d / "test/s1/u2.flac").resolve())  # resolved against the TSV folder
    np.testing.assert_array_equal(c.trials.label, [1, 0])
    assert c.summary()["trials"] == 2 and c.trial_report.ok


def test_voxceleb_and_kaldi_specs(tmp_path, voxceleb_tree, write_wave, tone):
    root, utts = voxceleb_tree(n_speakers=2, n_videos=1, n_utts=1, exts=("wav",))
    kd = tmp_path / "kaldi"
    kd.mkdir()
    write_wave(tmp_path / "kaudio/a.wav", tone(0.3), 16000)
    (kd / "wav.scp").write_text("a ../kaudio/a.wav\n")
    d = tmp_path / "c"
    d.mkdir()
    test = read_voxceleb(root)
    write_trials(d / "trials.txt", test, [0], [0], [1])
    write_corpus_json(d, "mixed", str(kd), str(root), "trials.txt")
    spec = json.loads((d / "corpus.json").read_text())
    assert spec["train"]["format"] == "kaldi" and spec["test"]["format"] == "voxceleb"
    c = open_corpus(d)
    assert c.train.utt_id == ["a"] and c.test.utt_id == utts and len(c.trials) == 1


def test_corpus_errors(tmp_path, write_wave, tone):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_corpus(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty.*synthvox"):
        open_corpus(tmp_path / "empty")
    d = _table_corpus(tmp_path, write_wave, tone)
    with pytest.raises(FileNotFoundError, match="corpus.json not found.*train.tsv"):
        open_corpus(d)
    cfile = d / "corpus.json"

    def put(obj):
        cfile.write_text(json.dumps(obj))

    base = {"name": "x", "train": {"format": "table", "path": "train.tsv"},
            "test": {"format": "table", "path": "test.tsv"}, "trials": "trials.txt"}
    put({**base, "train": {"format": "wavs", "path": "train.tsv"}})
    with pytest.raises(CorpusError, match="train: unknown format 'wavs'"):
        open_corpus(d)
    put({**base, "test": {"format": "table", "path": "nope.tsv"}})
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        open_corpus(d)
    put({k: v for k, v in base.items() if k != "trials"})
    with pytest.raises(CorpusError, match="missing key"):
        open_corpus(d)
    put({**base, "extra": 1})
    with pytest.raises(CorpusError, match="unknown key"):
        open_corpus(d)
    cfile.write_text("{not json")
    with pytest.raises(CorpusError, match="not valid JSON"):
        open_corpus(d)
    put(base)
    (d / "trials.txt").write_text("1 test/s1/u2.flac test/s9/u9.flac\n")
    with pytest.raises(TrialError, match="line 1: test/s9/u9.flac"):
        open_corpus(d)
    with pytest.raises(CorpusError, match="unknown format"):
        write_corpus_json(d, "x", {"format": "hdf5", "path": "a"}, "test.tsv")


def test_write_whole_spec_mapping(tmp_path, write_wave, tone):
    d = _table_corpus(tmp_path, write_wave, tone)
    spec = {"name": "w", "train": {"format": "table", "path": "train.tsv"},
            "test": {"format": "table", "path": "test.tsv"}, "trials": "trials.txt", "version": 2}
    write_corpus_json(d, spec)
    assert json.loads((d / "corpus.json").read_text()) == spec
    assert open_corpus(d).name == "w"
    with pytest.raises(CorpusError, match="missing"):
        write_corpus_json(d, {"name": "x"})


def _add_dev(d, write_wave, tone, speakers=("s3", "s4")):
    rows = []
    for i, spk in enumerate(speakers * 2):
        rel = f"dev/{spk}/u{i}.flac"
        write_wave(d / rel, tone(0.2 + 0.05 * i), 16000)
        rows.append((rel, spk, f"dsess{i}", rel, 0.2 + 0.05 * i))
    dev = UtteranceTable.from_rows(rows)
    dev.save(d / "dev.tsv")
    write_trials(d / "dev_trials.txt", dev, [1, 0, 0], [0, 0, 1], [2, 1, 2])
    return dev


def test_optional_dev_split(tmp_path, write_wave, tone, voxceleb_tree, caplog):
    d = _table_corpus(tmp_path, write_wave, tone)
    write_corpus_json(d, "nodev", "train.tsv", "test.tsv", "trials.txt")
    c = open_corpus(d)
    assert c.dev is None and c.dev_trials is None and "dev" not in c.summary()
    _add_dev(d, write_wave, tone)
    write_corpus_json(d, "dev", "train.tsv", "test.tsv", "trials.txt", dev_spec="dev.tsv", dev_trials="dev_trials.txt")
    spec = json.loads((d / "corpus.json").read_text())
    assert spec["dev"] == {"format": "table", "path": "dev.tsv"} and spec["dev_trials"] == "dev_trials.txt"
    c = open_corpus(d)
    assert len(c.dev) == 4 and set(c.dev.speaker) == {"s3", "s4"} and c.dev.path[0] == str((d / "dev/s3/u0.flac").resolve())
    np.testing.assert_array_equal(c.dev_trials.label, [1, 0, 0])
    assert c.summary()["dev_trials"] == 3 and c.dev_trial_report.ok
    # a dev table without a trial list (scored on all pairs only); a VoxCeleb tree as dev
    write_corpus_json(d, {k: v for k, v in spec.items() if k != "dev_trials"})
    assert open_corpus(d).dev is not None and open_corpus(d).dev_trials is None
    root, utts = voxceleb_tree(root=tmp_path / "vox", n_speakers=2, n_videos=1, n_utts=2, exts=("wav",))
    write_corpus_json(d, "voxdev", "train.tsv", "test.tsv", "trials.txt", dev_spec=str(root))
    c = open_corpus(d)
    assert c.spec["dev"]["format"] == "voxceleb" and c.dev.utt_id == utts
    # refused: dev trials without dev, dev sharing speakers or files with test, trials naming non-dev files
    with pytest.raises(CorpusError, match="dev_trials needs dev_spec"):
        write_corpus_json(d, "x", "train.tsv", "test.tsv", dev_trials="dev_trials.txt")
    with pytest.raises(CorpusError, match="unknown key"):
        write_corpus_json(d, "x", "train.tsv", "test.tsv", dev="dev.tsv")
    base = {"name": "x", "train": {"format": "table", "path": "train.tsv"},
            "test": {"format": "table", "path": "test.tsv"}, "trials": "trials.txt"}
    (d / "corpus.json").write_text(json.dumps({**base, "dev_trials": "dev_trials.txt"}))
    with pytest.raises(CorpusError, match="'dev_trials' given without a 'dev'"):
        open_corpus(d)
    (d / "corpus.json").write_text(json.dumps({**base, "dev": {"format": "table", "path": "test.tsv"}}))
    with pytest.raises(CorpusError, match="dev and test share 2 speaker"):
        open_corpus(d)
    _add_dev(d, write_wave, tone, speakers=("s1", "s5"))
    (d / "corpus.json").write_text(json.dumps({**base, "dev": {"format": "table", "path": "dev.tsv"}}))
    with pytest.raises(CorpusError, match="share 1 speaker"):
        open_corpus(d)
    _add_dev(d, write_wave, tone, speakers=("s5", "s6"))
    (d / "dev_trials.txt").write_text("1 dev/s5/u0.flac test/s1/u2.flac\n")
    (d / "corpus.json").write_text(json.dumps({**base, "dev": {"format": "table", "path": "dev.tsv"},
                                               "dev_trials": "dev_trials.txt"}))
    with pytest.raises(TrialError, match="test/s1/u2.flac"):
        open_corpus(d)
    (d / "dev_trials.txt").write_text("1 dev/s5/u0.flac dev/s5/u2.flac\n")
    assert len(open_corpus(d).dev_trials) == 1
    UtteranceTable.from_rows([("dev/s5/u0.flac", "s5", "x", "dev/s5/u0.flac", 0.2)]).save(d / "train5.tsv")
    (d / "corpus.json").write_text(json.dumps({**base, "train": {"format": "table", "path": "train5.tsv"},
                                               "dev": {"format": "table", "path": "dev.tsv"}}))
    caplog.set_level("WARNING", logger="ssrl_lab.data.corpus")
    assert open_corpus(d).dev_trials is None  # s5 is a training speaker too: allowed, logged
    assert "1 dev speaker(s) also appear in the training table" in caplog.text
