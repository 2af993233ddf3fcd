"""ssrl_lab.data.check on a generated corpus holding one planted fault of each kind, and what
training does with its bad-file list and with the skips it meets (ssrl_lab.train.skips)."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_tone, write_any

from ssrl_lab.config import ConfigError
from ssrl_lab.data import check
from ssrl_lab.data.corpus import open_corpus, write_corpus_json
from ssrl_lab.data.table import UtteranceTable
from ssrl_lab.train.skips import SkipLimitExceeded

#: the planted training faults: utt_id -> kind
TRAIN_FAULTS = {
    "id00009/-bad/00001.flac": "corrupt",
    "id00009/-bad/00002.m4a": "corrupt",
    "id00009/-bad/00003.wav": "empty",
    "id00009/-bad/00004.flac": "silent",
    "id00009/-bad/00005.wav": "nonfinite",
    "id00010/odd/00001.flac": "too_short",
    "id00010/odd/00002.wav": "resampled",
}
UNREADABLE_TRAIN = {u for u, k in TRAIN_FAULTS.items() if k in check.UNREADABLE}


def _good(path, i, sr=16000, seconds=1.6):
    write_any(path, make_tone(seconds, sr, freq=110 + 37 * (i % 4), seed=i), sr)


@pytest.fixture
def faulty_corpus(tmp_path):
    """Train: a VoxCeleb tree (wav / flac / m4a, video ids starting with '-') of 16 good files and
    the faults above. Test: a table with 6 good files, a silent one and a missing one, and trials."""
    root = tmp_path / "corpus"
    tr = root / "train"
    i = 0
    for s in range(4):
        for v in range(2):
            for u in range(2):
                _good(tr / f"id0000{s + 1}/-v{v}x/{u + 1:05d}.{('flac', 'wav', 'm4a')[i % 3]}", i)
                i += 1
    bad = tr / "id00009/-bad"
    bad.mkdir(parents=True)
    (bad / "00001.flac").write_bytes(b"fLaC not really" * 20)
    (bad / "00002.m4a").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (bad / "00003.wav").write_bytes(b"")
    write_any(bad / "00004.flac", np.zeros(16000, np.float32))
    w = make_tone(1.0)
    w[100:200] = np.nan
    sf.write(str(bad / "00005.wav"), w, 16000, subtype="FLOAT")
    _good(tr / "id00010/odd/00001.flac", 1, seconds=0.3)
    _good(tr / "id00010/odd/00002.wav", 2, sr=8000)
    sf.write(str(tr / "id00010/odd/00002.wav"), np.stack([make_tone(1.6, 8000)] * 2, 1), 8000)

    te = root / "test"
    utts, paths = [], []
    for k in range(6):
        p = te / f"id2000{k % 3}/t{k}/00001.flac"
        _good(p, 50 + k)
        utts.append(f"id2000{k % 3}/t{k}/00001.flac")
        paths.append(str(p))
    write_any(te / "id20000/quiet/00001.flac", np.zeros(16000, np.float32))
    utts += ["id20000/quiet/00001.flac", "id20001/gone/00001.flac"]
    paths += [str(te / "id20000/quiet/00001.flac"), str(te / "id20001/gone/00001.flac")]
    spk = [u.split("/")[0] for u in utts]
    UtteranceTable(utts, spk, [u.split("/")[1] for u in utts], paths, np.full(len(utts), 1.6)).save(root / "test.tsv")
    lines = [f"{int(spk[a] == spk[b])} {utts[a]} {utts[b]}" for a in range(len(utts)) for b in range(a + 1, len(utts))]
    (root / "trials.txt").write_text("\n".join(lines) + "\n")
    write_corpus_json(root, "faulty", {"format": "voxceleb", "path": "train"}, {"format": "table", "path": "test.tsv"})
    return root


def test_check_finds_every_planted_fault_and_writes_the_bad_list_beside_the_cached_table(faulty_corpus, capsys):
    assert check.main(["--corpus", str(faulty_corpus), "--workers", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "files/s" in out and "bad-file list" in out
    rep = check.load_report(open_corpus(faulty_corpus, on_missing="skip"))
    tr, te = rep.splits["train"], rep.splits["test"]
    assert tr["files"] == 23 and tr["ok"] == 18
    assert {k: tr[k] for k in check.KINDS} == {"missing": 0, "corrupt": 2, "empty": 1, "silent": 1, "nonfinite": 1,
                                                "too_short": 1, "resampled": 1}
    assert te["files"] == 8 and te["silent"] == 1 and te["missing"] == 1 and te["ok"] == 6
    assert tr["sample_rates"] == {"16000": 17, "8000": 1} and tr["channels"] == {"1": 17, "2": 1}
    assert rep.files_per_second > 0 and rep.workers == 2
    # the list lies beside the VoxCeleb tree's cached table and holds the unreadable files only
    bad_list = faulty_corpus / "train" / ".ssrl_table.bad.tsv"
    assert rep.bad_list == str(bad_list) and (faulty_corpus / "train" / ".ssrl_table.tsv").exists()
    entries = check.read_bad_list(bad_list)
    by = {(e["split"], e["utt_id"]): e["reason"] for e in entries}
    assert {u for (s, u) in by if s == "train"} == UNREADABLE_TRAIN
    assert all(by[("train", u)] == TRAIN_FAULTS[u] for u in UNREADABLE_TRAIN)
    assert by[("test", "id20000/quiet/00001.flac")] == "silent" and by[("test", "id20001/gone/00001.flac")] == "missing"
    assert {f["utt_id"]: f["kinds"] for f in rep.flagged} == {"id00010/odd/00001.flac": ["too_short"],
                                                              "id00010/odd/00002.wav": ["resampled"]}
    md = rep.to_markdown()
    assert "| corrupt (listed bad) | 2 | 0 |" in md and "| too short | 1 | 0 |" in md
    # the tree itself still reads the same (the list is a hidden file: not an utterance)
    assert len(open_corpus(faulty_corpus, on_missing="skip").train) == 23


def test_exclude_lists_short_and_resampled_files_too(faulty_corpus):
    rep = check.check_corpus(faulty_corpus, workers=1, exclude=["too_short", "resampled"], progress=False)
    train_bad = {b["utt_id"]: b["reason"] for b in rep.bad if b["split"] == "train"}
    assert set(train_bad) == set(TRAIN_FAULTS) and train_bad["id00010/odd/00002.wav"] == "resampled"
    with pytest.raises(ValueError, match="unknown kind"):
        check.check_corpus(faulty_corpus, exclude=["loud"], progress=False)


def test_listed_files_that_changed_since_the_check_are_not_skipped(faulty_corpus):
    check.check_corpus(faulty_corpus, workers=1, progress=False)
    c = open_corpus(faulty_corpus, on_missing="skip")
    rows, entries, _ = check.listed_bad_training_files(c)
    assert {c.train.utt_id[i] for i in rows} == UNREADABLE_TRAIN
    _good(faulty_corpus / "train/id00009/-bad/00004.flac", 3)  # the silent file was fixed
    rows, entries, _ = check.listed_bad_training_files(open_corpus(faulty_corpus, on_missing="skip"))
    assert {c.train.utt_id[i] for i in rows} == UNREADABLE_TRAIN - {"id00009/-bad/00004.flac"}


def _dino(corpus, run_dir, **kw):
    from ssrl_lab.train.dino import DINOConfig

    return DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), epochs=2, eval_every=0, **kw)


def _tsv(path):
    lines = Path(path).read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


def test_training_with_the_bad_list_skips_the_listed_files_from_the_first_step(faulty_corpus, tmp_path):
    from ssrl_lab.train.dino import train

    check.check_corpus(faulty_corpus, workers=1, progress=False)
    with pytest.raises(ConfigError, match="listed as unusable.*skip_bad=True"):  # refused before training
        train(_dino(faulty_corpus, tmp_path / "refused"), progress=False)
    with pytest.raises(SkipLimitExceeded, match=r"5 of 23 training files \(21.74 %\)"):  # 5 listed > 1 %
        train(_dino(faulty_corpus, tmp_path / "limit", skip_bad=True), progress=False)
    assert {r["path"] for r in _tsv(tmp_path / "limit" / "skipped.tsv")} == \
        {str(faulty_corpus / "train" / u) for u in UNREADABLE_TRAIN}
    assert not (tmp_path / "limit" / "metrics.jsonl").exists()  # nothing trained

    run = tmp_path / "run"
    res = train(_dino(faulty_corpus, run, skip_bad=True, max_skip_fraction=0.3), progress=False)
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["skipped"] for m in metrics] == [0, 0]  # none met while training: they were never drawn
    assert [m["skipped_total"] for m in metrics] == [5, 5]
    saved = json.loads((run / "results.json").read_text())
    assert saved["skipped"]["files"] == 5 and saved["skipped"]["upfront"] == 5
    assert saved["skipped"]["during_training"] == 0 and saved["skipped"]["of"] == 23
    assert saved["skipped"]["by_reason"] == {"corrupt": 2, "empty": 1, "nonfinite": 1, "silent": 1}
    rows = _tsv(run / "skipped.tsv")
    assert {r["when"] for r in rows} == {"upfront"} and len(rows) == 5
    assert res["system"] == "dino"


def test_skips_met_while_training_are_counted_per_epoch_across_loader_workers(faulty_corpus, tmp_path):
    from ssrl_lab.train.dino import train

    run = tmp_path / "run"
    train(_dino(faulty_corpus, run, skip_bad=True, max_skip_fraction=1.0, max_steps_per_epoch=2, num_workers=2),
          progress=False)
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    rows = _tsv(run / "skipped.tsv")
    seen = {r["path"]: r for r in rows}
    assert sum(m["skipped"] for m in metrics) == sum(int(r["times"]) for r in rows) > 0
    assert metrics[-1]["skipped_total"] == len(rows)
    assert {Path(p).relative_to(faulty_corpus / "train").as_posix() for p in seen} <= UNREADABLE_TRAIN
    assert all(r["when"] == "training" and r["first_seen"].startswith("dino ") for r in rows)
    saved = json.loads((run / "results.json").read_text())["skipped"]
    assert saved["during_training"] == len(rows) and saved["upfront"] == 0
    assert sum(saved["by_reason"].values()) == len(rows)


def test_max_skip_fraction_stops_a_run_that_meets_too_many_bad_files(faulty_corpus, tmp_path):
    from ssrl_lab.train.dino import train

    run = tmp_path / "run"
    with pytest.raises(SkipLimitExceeded, match=r"of 23 training files .* more than max_skip_fraction=0.01"):
        train(_dino(faulty_corpus, run, skip_bad=True), progress=False)
    rows = _tsv(run / "skipped.tsv")
    assert len(rows) >= 1 and all(r["reason"] in check.UNREADABLE for r in rows)
