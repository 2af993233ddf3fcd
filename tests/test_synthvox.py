"""SynthVox: the espeak binding, determinism, layout, tables, trials, CLI, idempotence."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssrl_lab.config import ConfigError
from ssrl_lab.data import espeak, synthvox
from ssrl_lab.data.table import UtteranceTable


def _hashes(root: Path, splits=("train", "test", "dev")) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for split in splits for p in sorted((root / split).rglob("*.flac"))}


def _file_hashes(root: Path, names) -> dict[str, str]:
    """sha256 of files and folders (every file below) under ``root``, with ``root`` itself written out
    of the text so that two builds in different places compare."""
    out = {}
    for name in names:
        p = root / name
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                data = f.read_bytes()
                if f.suffix in (".tsv", ".txt", ".json"):
                    data = data.replace(str(root).encode(), b"<root>")
                out[str(f.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


TRAIN_TEST_FILES = ("train", "test", "train.tsv", "test.tsv", "trials.txt", "speakers.json")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The smoke corpus built twice with the same seed: with its dev split (2 workers), and
    without it (``dev=False``, 1 worker)."""
    base = tmp_path_factory.mktemp("synthvox")
    a = synthvox.build_synthvox(base / "a", "smoke", seed=3, workers=2)
    b = synthvox.build_synthvox(base / "b", "smoke", seed=3, workers=1, dev=False)
    return a, b


def test_espeak_binding_non_silent_for_several_voices():
    es = espeak.get_espeak()
    assert es.sample_rate == 22050
    variants = espeak.list_variants()
    assert {"m3", "f2", "klatt3"} <= set(variants)
    assert "en-us" in espeak.list_base_voices()
    lengths = {}
    for voice in ("en+m3", "en-us+f2", "en-gb-scotland+klatt3", "en-029+m7"):
        x = espeak.get_espeak().synthesize("Please call Stella and ask her to bring these things.", voice=voice)
        assert x.dtype == np.int16 and len(x) > 0.8 * es.sample_rate, voice
        assert np.sqrt(np.mean(x.astype(float) ** 2)) > 300, f"{voice} is (nearly) silent"
        lengths[voice] = len(x)
    slow = es.synthesize("Please call Stella.", voice="en+m3", rate=100)
    fast = es.synthesize("Please call Stella.", voice="en+m3", rate=300)
    assert len(slow) > 1.5 * len(fast)
    with pytest.raises(espeak.EspeakError, match="voice"):
        es.synthesize("hello", voice="xx-nonexistent+m3")
    with pytest.raises(espeak.EspeakError, match="pitch"):
        es.synthesize("hello", pitch=120)
    assert espeak.variant_info("f2")["gender"] == "female" and espeak.variant_info("m3")["gender"] == "male"


def test_same_seed_gives_byte_identical_audio(built):
    """Same seed, other worker count, with and without the dev split: the same train and test."""
    a, b = built
    ha, hb = _hashes(a, ("train", "test")), _hashes(b, ("train", "test"))
    assert len(ha) == 8 * 6 + 6 * 8
    assert ha == hb
    for name in ("train.tsv", "test.tsv", "trials.txt", "speakers.json"):
        assert (a / name).read_text().replace(str(a), "") == (b / name).read_text().replace(str(b), ""), name
    assert _file_hashes(a, TRAIN_TEST_FILES) == _file_hashes(b, TRAIN_TEST_FILES)


def test_dev_split_disjoint_with_its_own_trials(built):
    root, _ = built
    assert synthvox.has_dev_split(root)
    spec = json.loads((root / "corpus.json").read_text())
    assert spec["dev"] == {"format": "table", "path": "dev.tsv"} and spec["dev_trials"] == "dev_trials.txt"
    train, test, dev = (UtteranceTable.load(root / f"{s}.tsv") for s in ("train", "test", "dev"))
    prof = synthvox.PROFILES["smoke"]
    assert len(set(dev.speaker)) == prof.dev_speakers and len(dev) == prof.dev_speakers * prof.dev_utts
    assert not set(dev.speaker) & set(train.speaker) and not set(dev.speaker) & set(test.speaker)
    for u, spk, p in zip(dev.utt_id, dev.speaker, dev.path):
        assert u.split("/")[0] == spk and Path(p) == root / "dev" / u and Path(p).is_file()
    sess = {s: {x for x, y in zip(dev.session, dev.speaker) if y == s} for s in set(dev.speaker)}
    assert all(len(v) == prof.dev_sessions for v in sess.values())
    # distinct voices: no dev voice repeats a train or test voice
    key = ("base", "variant", "pitch", "pitch_range", "rate", "warp")
    voices = [tuple(v[k] for k in key) for v in json.loads((root / "speakers.json").read_text())["speakers"]]
    dev_info = json.loads((root / "dev_speakers.json").read_text())["speakers"]
    assert {v["name"] for v in dev_info} == set(dev.speaker) and all(v["split"] == "dev" for v in dev_info)
    assert not {tuple(v[k] for k in key) for v in dev_info} & set(voices)
    # the same generation recipe: durations in the profile's range, audible, 16 kHz
    assert np.all(dev.duration >= prof.min_dur - 1e-3) and np.all(dev.duration <= prof.max_dur + 1e-3)
    wave, sr = sf.read(dev.path[0], dtype="float32")
    assert sr == 16000 and np.sqrt(np.mean(wave**2)) > 1e-3
    # its own trial list, built like the test one: balanced, valid, no duplicates
    idx = dev.lookup()
    lines = (root / "dev_trials.txt").read_text().splitlines()
    labels = [int(line.split()[0]) for line in lines]
    assert len({frozenset(line.split()[1:]) for line in lines}) == len(lines) == min(prof.n_dev_trials, 120)
    assert sum(labels) == len(lines) // 2
    for line in lines:
        lab, x, y = line.split()
        assert int(lab) == int(dev.speaker[idx[x]] == dev.speaker[idx[y]])
    counts = json.loads((root / "build.json").read_text())["counts"]
    assert counts["dev_utterances"] == len(dev) and counts["dev_trials"] == len(lines)
    from ssrl_lab.data.corpus import open_corpus

    c = open_corpus(root)
    assert len(c.dev) == len(dev) and len(c.dev_trials) == len(lines) and c.summary()["dev_trials"] == len(lines)


def test_dev_split_added_in_place_leaves_train_and_test_untouched(built, monkeypatch):
    """A corpus built without dev gains it in place: train and test byte-identical before and
    after, the dev split identical to that of a build made with it; a failed extension leaves the
    corpus as it was."""
    a, b = built
    assert not synthvox.has_dev_split(b) and "dev" not in json.loads((b / "corpus.json").read_text())
    from ssrl_lab.data.corpus import open_corpus

    assert open_corpus(b).dev is None and open_corpus(b).dev_trials is None
    before = _file_hashes(b, TRAIN_TEST_FILES)
    mtimes = {p: p.stat().st_mtime_ns for p in (b / "train").rglob("*.flac")}
    corpus_before = (b / "corpus.json").read_bytes()

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthvox, "_synthesise", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthvox.build_synthvox(b, "smoke", seed=3)
    monkeypatch.undo()
    assert (b / "corpus.json").read_bytes() == corpus_before and not synthvox.has_dev_split(b)
    assert not list(b.parent.glob("b.dev-tmp-*")), "temporary dev directory left behind"
    # leftovers of an earlier interrupted extension (not named by corpus.json) are replaced
    (b / "dev" / "junk").mkdir(parents=True)
    (b / "dev.tsv").write_text("junk\n")
    assert synthvox.main(["--profile", "smoke", "--out", str(b), "--seed", "3"]) == 0
    assert synthvox.has_dev_split(b) and not (b / "dev" / "junk").exists()
    assert _file_hashes(b, TRAIN_TEST_FILES) == before
    assert {p: p.stat().st_mtime_ns for p in (b / "train").rglob("*.flac")} == mtimes
    dev_files = ("dev", "dev.tsv", "dev_trials.txt", "dev_speakers.json", "corpus.json")
    assert _file_hashes(b, dev_files) == _file_hashes(a, dev_files)
    build = json.loads((b / "build.json").read_text())
    assert build["dev_seconds"] > 0 and build["counts"]["dev_utterances"] == 24
    assert not list(b.parent.glob("b.dev-tmp-*"))
    # a second run has nothing to do; --no-dev never removes a dev split
    assert synthvox.build_synthvox(b, "smoke", seed=3, dev=False) == b and synthvox.has_dev_split(b)


def test_layout_tables_and_speakers(built):
    root, _ = built
    for name in ("train.tsv", "test.tsv", "trials.txt", "corpus.json", "speakers.json", "build.json"):
        assert (root / name).is_file(), name
    assert not list(root.parent.glob("a.tmp-*")), "temporary build directory left behind"
    corpus = json.loads((root / "corpus.json").read_text())
    assert corpus["train"] == {"format": "table", "path": "train.tsv"} and corpus["trials"] == "trials.txt"
    train, test = UtteranceTable.load(root / "train.tsv"), UtteranceTable.load(root / "test.tsv")
    assert len(train) == 48 and len(test) == 48
    assert len(set(train.speaker)) == 8 and len(set(test.speaker)) == 6
    assert not set(train.speaker) & set(test.speaker), "test speakers must be disjoint from training speakers"
    for split, table in (("train", train), ("test", test)):
        for u, spk, sess, p in zip(table.utt_id, table.speaker, table.session, table.path):
            parts = u.split("/")
            assert len(parts) == 3 and parts[0] == spk and parts[1].startswith("sess") and parts[2].endswith(".flac")
            assert Path(p).is_absolute() and Path(p) == root / split / u and Path(p).is_file()
            assert sess == f"{spk}/{parts[1]}"
        sessions_per_speaker = {s: {x for x, y in zip(table.session, table.speaker) if y == s} for s in set(table.speaker)}
        assert min(len(v) for v in sessions_per_speaker.values()) >= 3
    info = json.loads((root / "speakers.json").read_text())
    names = {s["name"]: s for s in info["speakers"]}
    assert set(names) == set(train.speaker) | set(test.speaker)  # dev voices: dev_speakers.json
    assert all(names[s]["split"] == "train" for s in set(train.speaker))
    assert {s["gender"] for s in info["speakers"]} <= {"male", "female", "unknown"}
    build = json.loads((root / "build.json").read_text())
    assert build["profile"] == "smoke" and build["seed"] == 3 and build["difficulty"] == 1.0
    assert build["counts"]["train_utterances"] == 48 and build["seconds"] > 0


def test_durations_and_audio(built):
    root, _ = built
    prof = synthvox.PROFILES["smoke"]
    for split in ("train", "test"):
        table = UtteranceTable.load(root / f"{split}.tsv")
        assert np.all(table.duration >= prof.min_dur - 1e-3) and np.all(table.duration <= prof.max_dur + 1e-3)
        assert table.duration.std() > 0.05, "durations should vary"
        for i in range(0, len(table), 7):
            wave, sr = sf.read(table.path[i], dtype="float32")
            assert sr == 16000 and wave.ndim == 1
            assert abs(len(wave) / sr - table.duration[i]) < 1e-3
            assert np.isfinite(wave).all() and np.sqrt(np.mean(wave**2)) > 1e-3


def test_trials_balanced_and_valid(built):
    root, _ = built
    test = UtteranceTable.load(root / "test.tsv")
    idx = test.lookup()
    lines = (root / "trials.txt").read_text().splitlines()
    assert len(lines) == 200
    pairs, labels = set(), []
    for line in lines:
        lab, a, b = line.split()
        assert a in idx and b in idx and a != b, line
        same = test.speaker[idx[a]] == test.speaker[idx[b]]
        assert int(lab) == int(same), line
        pairs.add(frozenset((a, b)))
        labels.append(int(lab))
    assert len(pairs) == 200, "duplicate trials"
    assert sum(labels) == 100


def test_make_trials_caps_targets_at_available_pairs():
    table = UtteranceTable.from_rows([(f"s{s}/u{u}", f"s{s}", f"s{s}/x", f"/x/{s}{u}", 1.0)
                                      for s in range(3) for u in range(3)])
    trials = synthvox.make_trials(table, 100, np.random.default_rng(0))
    assert sum(t[0] for t in trials) == 9 and len(trials) == 18


def test_idempotent_rebuild_and_refusal(built, caplog):
    root, _ = built
    before = _hashes(root)
    mtime = (root / "build.json").stat().st_mtime_ns
    caplog.set_level("INFO", logger="ssrl_lab.data.synthvox")
    assert synthvox.build_synthvox(root, "smoke", seed=3) == root
    assert "nothing to do" in caplog.text
    assert (root / "build.json").stat().st_mtime_ns == mtime and _hashes(root) == before
    with pytest.raises(synthvox.SynthVoxError, match="--force"):
        synthvox.build_synthvox(root, "smoke", seed=4)
    assert synthvox.main(["--profile", "smoke", "--out", str(root), "--seed", "4"]) == 2
    assert synthvox.main(["--profile", "smoke", "--out", str(root), "--seed", "3"]) == 0


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        synthvox.main(["--profile", "huge", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "huge" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        synthvox.main(["--profile", "smoke", "--out", str(tmp_path / "x"), "--difficulty", "-1"])
    assert e.value.code == 2 and "-1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="difficulty"):
        synthvox.build_synthvox(tmp_path / "y", "smoke", difficulty=-0.5)
    with pytest.raises(ConfigError, match="profile"):
        synthvox.build_synthvox(tmp_path / "y", "nope")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_difficulty_scales_spread_jitter_and_channel():
    easy, default, hard = (synthvox.Difficulty.at(x) for x in (0.0, 1.0, 2.0))
    assert easy.snr_db is None and easy.reverb_prob == 0 and easy.tilt_max == 0 and easy.jitter == 0
    assert default.snr_db == (5.0, 20.0) and default.reverb_prob == 0.5 and default.tilt_max == pytest.approx(0.8)
    assert default.rt60 == pytest.approx((0.2, 0.6)) and default.gain_db == 10.0
    assert easy.spread > default.spread > hard.spread
    assert hard.snr_db[1] < default.snr_db[1] and hard.reverb_prob > default.reverb_prob
    bases, variants = ["en"], ["m3"]
    pitches = [synthvox.sample_speaker(0, i, "s", "train", d, bases, variants, {}).pitch for d in (easy, hard)
               for i in range(50)]
    assert np.std(pitches[:50]) > 1.5 * np.std(pitches[50:])


def test_speaker_colour_warp_moves_formants_not_harmonics():
    """A 100 Hz pulse train through a resonance at 1 kHz: warping moves the spectral centroid of
    the harmonics by about the warp factor while the harmonics stay at multiples of 100 Hz."""
    from scipy.signal import lfilter

    src = np.zeros(16000)
    src[::160] = 1.0
    r = 0.97
    x = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * 1000 / 16000), r * r], src)
    assert np.allclose(synthvox.speaker_colour(x, 1.0, np.zeros(8)), x, atol=1e-4)

    def harmonics(sig):
        spec = np.abs(np.fft.rfft(sig * np.hanning(len(sig))))  # 1 Hz bins
        h = np.array([spec[k * 100 - 3:k * 100 + 4].max() for k in range(1, 40)])
        between = np.array([spec[k * 100 + 50] for k in range(1, 39)])
        return h, between

    def centroid(h):
        return float((h * np.arange(1, 40) * 100).sum() / h.sum())

    h0, _ = harmonics(x)
    up, between = harmonics(synthvox.speaker_colour(x, 1.2, np.zeros(8)))
    down, _ = harmonics(synthvox.speaker_colour(x, 0.85, np.zeros(8)))
    assert centroid(up) > 1.08 * centroid(h0)
    assert centroid(down) < 0.95 * centroid(h0)
    assert np.median(up[:-1] / between) > 20, "harmonic structure must survive the warp"
    # the EQ alone: +6 dB everywhere is a gain of 2
    assert np.allclose(synthvox.speaker_colour(x, 1.0, np.full(8, 6.0206)), 2 * x, atol=1e-3)


def test_dev_profile_checks():
    with pytest.raises(ConfigError, match="dev_speakers"):
        synthvox.SynthVoxProfile(dev_speakers=1).validate()
    with pytest.raises(ConfigError, match="dev_utts"):
        synthvox.SynthVoxProfile(dev_sessions=4, dev_utts=3).validate()
    synthvox.SynthVoxProfile(dev_speakers=0, dev_sessions=0, dev_utts=0).validate()  # 0: no dev split
    demo = synthvox.PROFILES["demo"]
    assert (demo.dev_speakers, demo.dev_sessions, demo.dev_utts, demo.n_dev_trials) == (
        demo.test_speakers, demo.test_sessions, demo.test_utts, demo.n_trials)  # dev made like test


def test_study_profile_keeps_the_demo_training_audio_and_adds_test_power():
    """The 'study' profile (issue 23): demo's train fields, so demo's 200 training speakers and
    their audio; 200 test speakers with 40,000 trials and 80 dev speakers."""
    demo, study = synthvox.PROFILES["demo"], synthvox.PROFILES["study"]
    assert {f: getattr(study, f) for f in synthvox.TRAIN_FIELDS} == {f: getattr(demo, f) for f in synthvox.TRAIN_FIELDS}
    assert study.test_speakers >= 200 and study.n_trials >= 40_000 and study.dev_speakers >= 80
    # the demo's test speakers are the first 40 of the study's (same fields, same per-speaker seeds)
    assert (study.test_sessions, study.test_utts) == (demo.test_sessions, demo.test_utts)
    assert synthvox._split_ranges(study)["test"][:demo.test_speakers] == synthvox._split_ranges(demo)["test"]


def test_train_audio_depends_only_on_the_train_fields(built, tmp_path, monkeypatch):
    """Hash test of the mechanism behind 'study' = 'demo' on train audio, at smoke scale: a profile
    with the smoke profile's train fields and other test and dev splits writes byte-identical train
    files (and train table); changing a train field changes them."""
    import dataclasses

    a, _ = built
    smoke = synthvox.PROFILES["smoke"]
    more = dataclasses.replace(smoke, name="smoke_more", test_speakers=5, n_trials=150, dev_speakers=4)
    longer = dataclasses.replace(smoke, name="smoke_longer", train_utts=smoke.train_utts + 3)
    monkeypatch.setitem(synthvox.PROFILES, "smoke_more", more)
    monkeypatch.setitem(synthvox.PROFILES, "smoke_longer", longer)
    c = synthvox.build_synthvox(tmp_path / "more", "smoke_more", seed=3, workers=2)
    assert _file_hashes(c, ("train", "train.tsv")) == _file_hashes(a, ("train", "train.tsv"))
    assert len(_hashes(c, ("test",))) == 5 * smoke.test_utts != len(_hashes(a, ("test",)))
    d = synthvox.build_synthvox(tmp_path / "longer", "smoke_longer", seed=3, workers=2, dev=False)
    assert _hashes(d, ("train",)) != _hashes(a, ("train",))
