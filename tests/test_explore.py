"""05_explore's machinery: history alignment, the teacher space over epochs, listening, the explorer."""
import json
from pathlib import Path

import numpy as np
import pytest

from ssrl_lab.runs import Run, RunError
from ssrl_lab.train.snapshots import snapshot_path
from ssrl_lab.utils.io import atomic_numpy_save
from ssrl_lab.viz import embedding, explore, listen


def _fake_run(root: Path, utt, corpus=None, epochs=(2, 4), history=True, seed=0) -> Run:
    """A run directory with teacher snapshots whose clusters drift apart over epochs, and a history."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"system": "ssrl", "corpus": str(corpus) if corpus else ""}))
    utt = np.asarray(utt)
    n = utt.size
    spk = np.arange(n) % 4
    centres = rng.standard_normal((4, 16))
    for j, e in enumerate(epochs):
        emb = centres[spk] * (0.5 + j) + rng.standard_normal((n, 16))
        atomic_numpy_save(snapshot_path(root, e), emb=emb.astype(np.float32), utt_id=utt, fingerprint=np.asarray("x"))
    atomic_numpy_save(root / "embeddings" / "dino_train.npz", emb=rng.standard_normal((n, 16)).astype(np.float32),
                      utt_id=utt)
    if history:
        E = 4
        labels = np.stack([spk if e % 2 else (spk + 1) % 4 for e in range(E)]).astype(np.int32)
        atomic_numpy_save(root / "history.npz", labels=labels, epoch=np.arange(1, E + 1),
                          p_clean=np.tile(np.linspace(0, 1, n), (E, 1)).astype(np.float16),
                          queue_agreement=np.full((E, n), 0.5, np.float16), loss=np.ones((E, n), np.float32),
                          true=spk.astype(np.int64), utt_id=utt)
    return Run(root)


def test_history_aligned_matches_columns_by_utterance(tmp_path):
    run = _fake_run(tmp_path / "r", [f"u{i}" for i in range(8)])
    al = run.history_aligned(["u3", "nope", "u0"], epoch=2)
    assert al["epoch"] == 2 and al["row"] == 1
    assert al["labels"].tolist() == [3 % 4, -1, 0] and al["true"].tolist() == [3, -1, 0]
    assert np.isnan(al["p_clean"][1]) and al["p_clean"][2] == 0.0 and al["column"].tolist() == [3, -1, 0]
    assert run.history_aligned(["u1"], epoch=0)["epoch"] == 1  # before the first row: the first row
    assert run.history_aligned(["u1"], epoch=99)["epoch"] == 4 and run.history_aligned(["u1"])["epoch"] == 4
    assert Run(tmp_path / "none").history_aligned(["u1"]) is None


def test_teacher_space_maps_every_epoch_on_the_same_points_and_caches(tmp_path, monkeypatch):
    run = _fake_run(tmp_path / "r", [f"u{i}" for i in range(40)])
    sp = explore.TeacherSpace(run, method="pca", cap=30)
    assert sp.epochs == [0, 2, 4]  # dino_train.npz is the SSRL run's epoch 0
    xy2, u2 = sp.projection(2)
    xy4, u4 = sp.projection(4)
    assert xy2.shape == (30, 2) and np.array_equal(u2, u4) and not np.allclose(xy2, xy4)
    assert "epoch 0" in sp.model_name(0) and "DINO" in sp.model_name(0) and sp.model_name(4) == "ssrl teacher, epoch 4"
    files = sorted(p.name for p in sp.cache_dir.glob("*.npz"))
    assert files == ["e0000.npz", "e0002.npz", "e0004.npz"]

    calls = []
    monkeypatch.setattr(explore, "aligned_pca", lambda *a, **k: calls.append(1) or [])
    again = explore.TeacherSpace(run, method="pca", cap=30)
    assert np.array_equal(again.projection(4)[0], xy4) and not calls  # read from the cache
    monkeypatch.undo()
    emb = np.random.default_rng(5).standard_normal((40, 16)).astype(np.float32)
    atomic_numpy_save(snapshot_path(run.path, 6), emb=emb, utt_id=np.array([f"u{i}" for i in range(40)]))
    grown = explore.TeacherSpace(run, method="pca", cap=30)
    assert grown.epochs == [0, 2, 4, 6] and grown.cache_dir != sp.cache_dir and grown.projection(6)[0].shape == (30, 2)
    with pytest.raises(KeyError, match="available"):
        grown.projection(5)


def test_teacher_space_without_snapshots_says_how_to_get_them(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")
    with pytest.raises(RunError, match="snapshots.enabled"):
        explore.TeacherSpace(tmp_path / "r", method="pca")


def test_epoch_figure_title_names_model_epoch_and_label_epoch(tmp_path):
    run = _fake_run(tmp_path / "r", [f"u{i}" for i in range(20)])
    sp = explore.TeacherSpace(run, method="pca")
    fig = explore.epoch_figure(sp, 2, speaker_names=["ann", "bob", "cy", "dee"])
    t = fig.layout.title.text
    assert "ssrl teacher, epoch 2" in t and "pseudo label" in t and "aligned PCA of 20" in t
    assert len(fig.data) == 1 and len(fig.data[0].x) == 20
    fig0 = explore.epoch_figure(sp, 0, color="true speaker", speaker_names=["ann", "bob", "cy", "dee"])
    assert "epoch 0" in fig0.layout.title.text and "ann" in " ".join(fig0.data[0].text)
    cols, al = sp.colorings(0)
    assert al["epoch"] == 1 and "labels of epoch 1" in explore.map_title(sp, 0, "pseudo label", al["epoch"])


def test_embedding_dropdown_keeps_the_title_text():
    proj = embedding.project(np.random.default_rng(0).standard_normal((30, 8)), method="pca")
    fig = embedding.embedding_figure(proj, [f"u{i}" for i in range(30)], {"a": np.arange(30) % 3, "b": np.linspace(0, 1, 30)},
                                     title="ssrl teacher, epoch 6")
    for b in fig.layout.updatemenus[0].buttons:
        assert isinstance(b.args[1]["title"], dict) and "ssrl teacher, epoch 6" in b.args[1]["title"]["text"]


def _aligned(n=25):
    return {"epoch": 3, "labels": np.array([7] * (n - 1) + [2]), "true": np.array([0] * (n - 5) + [1] * 4 + [-1]),
            "p_clean": np.linspace(1, 0, n), "queue_agreement": np.full(n, 0.8), "loss": np.ones(n)}


def test_members_least_clean_first_with_speaker_names(tmp_path, tone, write_wave):
    n = 25
    utt = np.array([f"u{i:02d}" for i in range(n)])
    paths = {u: str(write_wave(tmp_path / f"{u}.flac", tone(0.3, seed=i))) for i, u in enumerate(utt[:3])}
    rows = listen.members(_aligned(n), utt, 7, names=["alice", "bob"], paths=paths)
    assert len(rows) == n - 1 and [r.p_clean for r in rows] == sorted(r.p_clean for r in rows)
    assert rows[0].utt_id == "u23" and rows[0].speaker == "bob" and rows[0].majority == "alice"
    assert rows[0].matches_majority is False and rows[-1].speaker == "alice" and rows[-1].matches_majority
    with pytest.raises(KeyError, match="no members"):
        listen.members(_aligned(n), utt, 99)

    ml = listen.MemberList(rows, page_size=20)
    assert ml.n_pages == 2 and len(ml.body.children) == 21  # header + 20 rows
    assert ml.skips.count == 20 and "20 unreadable" in ml.status.value  # page 1: u23..u04, no files
    ml.show(1)
    kinds = [type(r.children[-1]).__name__ for r in ml.body.children[1:]]
    assert kinds == ["HTML", "Audio", "Audio", "Audio"]  # u03 (no file), u02, u01, u00
    assert "page 2 of 2" in ml.status.value and ml.next.disabled and not ml.prev.disabled


def test_players_read_m4a_and_note_unreadable_files(tmp_path, tone, write_wave):
    import io

    import ipywidgets as w
    import soundfile as sf

    m4a = write_wave(tmp_path / "a.m4a", tone(0.5, sr=16000))
    data = listen.wav_bytes(m4a)
    wave, sr = sf.read(io.BytesIO(data))
    assert sr == 16000 and abs(wave.shape[0] - 8000) < 2048
    assert isinstance(listen.player(m4a, "a"), w.Audio)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    skips = listen.Skips()
    note = listen.player(bad, "bad", skips)
    assert isinstance(note, w.HTML) and "skipped bad" in note.value and "corrupt" in note.value and skips.count == 1
    rows = [listen.Member("a", str(m4a), 1, 0.1, 0.5, "alice", "alice"),
            listen.Member("bad", str(bad), 1, 0.2, 0.5, "bob", "alice")]
    page = listen.embedded_players(rows, "least clean")
    assert page.count("data:audio/wav;base64,") == 1 and "skipped bad" in page and "1 unreadable" in page


def test_clean_extremes():
    least, clean = listen.clean_extremes(_aligned(), [f"u{i}" for i in range(25)], n=5)
    assert [m.utt_id for m in least] == ["u24", "u23", "u22", "u21", "u20"]
    assert [m.utt_id for m in clean][:2] == ["u0", "u1"] and len(clean) == 5


def test_explorer_draws_at_once_and_updates_in_place(smoke_corpus, tmp_path):
    from ssrl_lab.data.corpus import open_corpus

    train = open_corpus(smoke_corpus).train
    run = _fake_run(tmp_path / "r", train.utt_id, corpus=smoke_corpus)
    other = _fake_run(tmp_path / "o", train.utt_id, corpus=smoke_corpus, epochs=(1,), seed=3)
    ex = explore.Explorer([str(other.path)], str(run.path), method="pca", cap=100, page_size=5)
    fig = ex.fig
    assert len(fig.data) == 1 and len(fig.data[0].x) == len(train) and ex.w_epoch.value == 4
    x_before, title_before = list(fig.data[0].x), fig.layout.title.text
    assert "epoch 4" in title_before
    ex.w_epoch.value = 2
    assert ex.fig is fig and list(fig.data[0].x) != x_before and "ssrl teacher, epoch 2" in fig.layout.title.text
    ex.w_color.value = "p_clean"
    assert fig.data[0].marker.colorscale is not None and "p_clean" in fig.layout.title.text
    rows = ex.member_list.body.children[1:]
    assert len(rows) == 5 and all(type(r.children[-1]).__name__ == "Audio" for r in rows)
    values = [v for _, v in ex.w_cluster.options]
    ex.w_cluster.value = values[-1]
    assert f"c{values[-1]}" in ex.member_list.status.value
    ex.play(train.utt_id[0])
    hist = ex.history_figure(train.utt_id[0])  # what a click shows under the player
    assert hist is not None and train.utt_id[0] in hist.layout.title.text
    code = int(np.asarray(run.history()["true"])[0])
    assert f"true speaker {ex.names[code]}" in hist.layout.title.text  # the name, not "#<code>"
    ex.w_run.value = str(other.path)
    assert ex.fig is fig and list(ex.w_epoch.options) == [0, 1] and "epoch 1" in fig.layout.title.text


@pytest.mark.slow
def test_aligned_umap_moves_points_between_epochs(tmp_path):
    run = _fake_run(tmp_path / "r", [f"u{i}" for i in range(60)])
    sp = explore.TeacherSpace(run, method="umap", cap=60, n_neighbors=10)
    a, b = sp.projection(2)[0], sp.projection(4)[0]
    assert a.shape == b.shape == (60, 2) and np.isfinite(a).all() and not np.allclose(a, b)
