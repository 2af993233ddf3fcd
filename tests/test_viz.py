"""Plots on synthetic inputs in the documented run-directory formats."""
import json

import numpy as np
import pytest

from ssrl_lab.viz import clusters, embedding, noise, queue, training, verification
from ssrl_lab.viz.save import PLOTLY_JS, save_figure


def _history(E=4, N=300, K=12, S=6, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, S, N)
    labels = np.empty((E, N), np.int32)
    for e in range(E):
        lab = true * 2 + rng.integers(0, 2, N)  # each speaker split in two clusters
        flip = rng.random(N) < 0.3 / (e + 1)     # noise falls over epochs
        lab[flip] = rng.integers(0, K, flip.sum())
        labels[e] = lab
    loss = rng.lognormal(0.0, 1.0, (E, N)).astype(np.float32)
    gmm = np.tile(np.array([[0.6, 0.4], [-0.5, 1.0], [0.3, 0.5]], np.float32), (E, 1, 1))
    return {"labels": labels, "p_clean": rng.random((E, N)).astype(np.float16), "loss": loss,
            "queue_agreement": rng.random((E, N)).astype(np.float16), "true": true.astype(np.int64),
            "utt_id": np.array([f"u{i}" for i in range(N)]), "gmm": gmm,
            "clip": np.tile(np.array([[-3.0, 3.0]], np.float32), (E, 1))}


def test_save_figure_writes_html_and_one_plotly_js(tmp_path):
    fig = training.training_curves([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}])
    p1 = save_figure(fig, tmp_path, "a")
    p2 = save_figure(fig, tmp_path, "b.html")
    assert p1 == tmp_path / "plots" / "a.html" and p2.name == "b.html"
    html = p1.read_text()
    assert 'src="plotly.min.js"' in html and len(html) < 200_000  # plotly.js is not inlined
    assert (tmp_path / "plots" / PLOTLY_JS).stat().st_size > 1_000_000
    assert not list((tmp_path / "plots").glob(".*.tmp"))
    with pytest.raises(ValueError, match="plot name"):
        save_figure(fig, tmp_path, "../evil")
    assert "<title>training</title>" in html
    p3 = save_figure(training.training_curves([{"epoch": 0, "loss": 1.0}], title="A <b>&</b> B"), tmp_path, "c",
                     template="paper")
    t = p3.read_text()
    assert "<title>A &amp; B</title>" in t and '"plot_bgcolor":"white"' in t.replace(" ", "")
    from ssrl_lab.viz import show_and_save
    assert show_and_save(fig, tmp_path, "d", show=False) is None
    with pytest.raises(ValueError, match="unknown figure template"):
        save_figure(fig, tmp_path, "e", template="nope")


def test_training_curves_pick_present_keys():
    m = [{"stage": "dino", "epoch": e, "loss": 5 - e, "lr": 0.1 * e, "momentum": 0.99,
          "teacher_entropy": 1.0 + e, "teacher_entropy_of_mean": 6.0, "teacher_distinct_argmax": 10 * e,
          **({"eval": {"eer": 30.0 - e, "eer_all_pairs": 31.0 - e}} if e % 2 else {})} for e in range(5)]
    fig = training.training_curves(m)
    assert [t.meta for t in fig.data] == ["loss", "lr", "momentum"]
    assert [t.name for t in fig.data] == ["loss", "learning rate", "momentum"]
    assert list(fig.data[0].y) == [5, 4, 3, 2, 1]
    fig = training.collapse_curves(m)
    assert [t.meta for t in fig.data] == ["teacher_entropy", "teacher_entropy_of_mean", "teacher_distinct_argmax"]
    fig = training.curves(m, {"EER (%)": ["eval.eer", "eval.eer_all_pairs"]})
    assert [t.name for t in fig.data] == ["teacher EER, trial list", "teacher EER, all pairs"]
    fig = training.eer_curves({"dino": m})
    assert [t.name for t in fig.data] == ["dino", "dino (all pairs)"]
    assert list(fig.data[0].x) == [1, 3] and list(fig.data[0].y) == [29, 27]
    empty = training.training_curves([])
    assert not empty.data and "no metrics" in empty.layout.annotations[0].text


def test_embedding_pca_projection_and_figure():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 16)).astype(np.float32)
    proj = embedding.project(emb, method="pca", cap=200, seed=1)
    assert proj.xy.shape == (200, 2) and proj.subsampled and np.all(np.diff(proj.index) > 0)
    assert "cap 200" in proj.describe()
    utt = [f"u{i}" for i in range(500)]
    cols = {"pseudo label": rng.integers(0, 9, 500), "p_clean": rng.random(500)}
    fig = embedding.embedding_figure(proj, utt, cols)
    assert len(fig.data) == 2 and fig.data[0].visible and not fig.data[1].visible
    assert len(fig.layout.updatemenus[0].buttons) == 2
    assert fig.data[0].text[0].startswith(f"u{proj.index[0]}<br>pseudo label")
    assert fig.data[1].marker.colorscale is not None and "cap 200" in fig.layout.title.text
    with pytest.raises(ValueError, match="has 3 values"):
        embedding.embedding_figure(proj, utt, {"x": np.zeros(3)})


@pytest.mark.slow
def test_embedding_umap_is_deterministic():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32))
    emb = np.concatenate([c + 0.05 * rng.normal(size=(50, 32)) for c in centers]).astype(np.float32)
    a = embedding.project(emb, method="umap", seed=0)
    b = embedding.project(emb, method="umap", seed=0)
    assert a.xy.shape == (200, 2) and np.allclose(a.xy, b.xy)


def test_cluster_purity_values():
    pred = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    true = np.array([5, 5, 6, 7, 7, 8, 9, 9, -1])
    cp = clusters.cluster_purity(pred, true)
    assert cp.cluster.tolist() == [0, 1, 2] and cp.size.tolist() == [3, 2, 3]
    assert np.allclose(cp.purity, [2 / 3, 1.0, 2 / 3]) and cp.majority.tolist() == [5, 7, 9]
    assert cp.weighted_purity() == pytest.approx(6 / 8)
    assert cp.row(1) == {"cluster": 1, "size": 2, "purity": 1.0, "majority": 7}
    fig = clusters.purity_vs_size(pred, true, speaker_names=[f"s{i}" for i in range(10)])
    assert fig.layout.xaxis.type == "log" and list(fig.data[0].x) == [3, 2, 3]
    assert "majority speaker s5" in fig.data[0].text[0]
    assert clusters.log_ticks(8, 30) == [10.0, 20.0, 30.0] and clusters.log_ticks(1, 1000)[:3] == [1, 2, 5]
    assert "majority speaker s7: 2 of 2" in cp.describe(1, [f"s{i}" for i in range(10)])
    assert cp.table().splitlines()[1].split()[0] in ("0", "2")


def test_quality_and_count_curves():
    m = [{"epoch": e, "nmi": 0.7 + 0.01 * e, "purity": 0.6, "accuracy": 0.5, "n_clusters": 30 - e} for e in range(4)]
    fig = clusters.quality_curves(m)
    assert [t.name for t in fig.data] == ["NMI", "purity", "accuracy"]
    it = [{"stage": "round1", "round": 1, "epoch": 1, "loss": 2.0},
          {"stage": "iterative", "round": 1, "pseudo_labels": {"nmi": 0.7}, "eval": {"eer": 12.0}},
          {"stage": "iterative", "round": 2, "pseudo_labels": {"nmi": 0.8}, "eval": {"eer": 10.0}}]
    fig = clusters.quality_curves(it, x="round", stage="iterative")
    assert [t.name for t in fig.data] == ["NMI"] and list(fig.data[0].x) == [1, 2]
    fig = training.eer_curves({"it": it}, x="round", stage="iterative")
    assert list(fig.data[0].y) == [12.0, 10.0]
    fig = clusters.cluster_count_curve(m, n_true=20)
    assert list(fig.data[0].y) == [30, 29, 28, 27] and fig.layout.shapes[0].y0 == 20
    h = _history()
    fig = clusters.cluster_count_from_history(h["labels"], 6)
    assert list(fig.data[0].y) == [len(np.unique(r)) for r in h["labels"]]
    # from a history.npz: the recorded aggregates when present, else counted from the labels
    counted = clusters.history_cluster_count(h)
    assert list(counted.data[0].y) == [len(np.unique(r)) for r in h["labels"]] and counted.layout.shapes[0].y0 == 6
    recorded = clusters.history_cluster_count({**h, "epoch": np.arange(1, 5), "agg_n_clusters": np.array([9, 8, 7, 7])})
    assert list(recorded.data[0].y) == [9, 8, 7, 7] and list(recorded.data[0].x) == [1, 2, 3, 4]


def test_queue_dynamics_and_sankey():
    h = _history()
    cr = queue.change_rate(h["labels"])
    assert np.isnan(cr[0]) and cr[1] == pytest.approx((h["labels"][1] != h["labels"][0]).mean())
    fig = queue.label_dynamics(h)
    assert [t.name for t in fig.data] == ["label change rate", "queue agreement"]
    a = np.array([0, 0, 0, 0, 1, 1, 2])
    b = np.array([3, 3, 4, 4, 3, 3, 5])
    src, dst, cnt = queue.flows(a, b)
    assert cnt.tolist() == [2, 2, 2, 1] and (src[-1], dst[-1]) == (2, 5)
    fig = queue.cluster_sankey(a, b, 1, 2, top_n=3)
    assert sum(fig.data[0].link.value) == 6 and "6 of 7" in fig.layout.title.text
    # a stable cluster (7 -> 7) is left out; one colour per cluster on both sides
    a2 = np.r_[a, [7] * 20]
    b2 = np.r_[b, [7] * 20]
    fig = queue.cluster_sankey(a2, b2, 1, 2, threshold=0.1)
    labs = list(fig.data[0].node.label)
    assert not any(l.endswith("c7") for l in labs)
    cols = dict(zip(labs, fig.data[0].node.color))
    by_cluster = {}
    for lab, col in cols.items():
        by_cluster.setdefault(lab.split(": ")[1], set()).add(col)
    assert all(len(c) == 1 for c in by_cluster.values())  # a cluster keeps its colour from epoch to epoch
    assert len({next(iter(c)) for c in by_cluster.values()}) == len(by_cluster)  # and no two clusters share one
    fig = queue.cluster_sankey(np.r_[a, [3, 3]], np.r_[b, [3, 3]], 1, 2)
    labs = list(fig.data[0].node.label)
    colors = dict(zip(labs, fig.data[0].node.color))
    assert colors["e1: c3"] == colors["e2: c3"]
    same = queue.cluster_sankey(a2[-20:], b2[-20:], 1, 2)
    assert not same.data and "no cluster changed" in same.layout.annotations[0].text
    assert queue.stayed_share(a, a) == 1.0
    fig = queue.label_history_figure(h, 5, "u5", speaker_names=[f"spk{i}" for i in range(6)])
    assert len(fig.data) == 3 and "u5" in fig.layout.title.text
    assert f"spk{h['true'][5]}" in fig.layout.title.text
    assert all(float(v).is_integer() for v in fig.layout.yaxis.tickvals)
    assert list(fig.layout.yaxis2.range) == [0, 1.05] and list(fig.layout.yaxis3.range) == [0, 1.05]
    assert fig.layout.xaxis3.title.text == "epoch"
    fig = queue.label_dynamics(h)
    assert fig.data[0].yaxis != fig.data[1].yaxis and fig.layout.yaxis.rangemode == "tozero"
    assert fig.layout.xaxis2.title.text == "epoch"


def test_noise_slider_and_detector():
    h = _history()
    fig = noise.loss_histogram_slider(h, bins=20)
    assert len(fig.data) == 16 and len(fig.layout.sliders[0].steps) == 4
    assert sum(bool(t.visible) for t in fig.data) == 4
    # slider steps relayout the title's text only, so the title survives a move
    assert all(set(st.args[1]) == {"title.text"} for st in fig.layout.sliders[0].steps)
    # the mixture integrates to about 1 over the clipped log-loss range
    comp = noise.gmm_components(h["gmm"][0], np.linspace(-10, 10, 4001))
    assert comp.sum(1).sum() * 20 / 4000 == pytest.approx(1.0, abs=1e-3)
    labels = np.array([0, 0, 0, 1, 1])
    true = np.array([7, 7, 8, 9, -1])
    assert noise.correct_mask(labels, true).tolist() == [True, True, False, True, False]
    hh = {"labels": labels[None], "true": true, "p_clean": np.array([[0.9, 0.1, 0.9, 0.9, 0.9]])}
    st = noise.detector_stats(hh)
    assert st["precision"][0] == pytest.approx(2 / 3) and st["recall"][0] == pytest.approx(2 / 3)
    assert st["clean_share"][0] == pytest.approx(0.8)
    fig = noise.detector_curves(h)
    assert len(fig.data) == 4


def test_det_and_score_distributions():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(500), np.zeros(2000)].astype(np.int8)
    good = np.r_[rng.normal(2, 1, 500), rng.normal(0, 1, 2000)]
    bad = np.r_[rng.normal(0.5, 1, 500), rng.normal(0, 1, 2000)]
    fig = verification.det_figure({"good": (good, labels), "bad": (bad, labels)})
    names = [t.name for t in fig.data if t.name]
    assert names[0].startswith("good (EER") and names[1].startswith("bad (EER")
    # normal-deviate axes: the 1 % tick sits at probit(0.01)
    assert fig.layout.xaxis.tickvals[3] == pytest.approx(-2.3263, abs=1e-3)
    # the better system's curve lies below the worse one at the same false-alarm rate
    g, b = fig.data[0], fig.data[2]
    assert np.interp(0.0, g.x[::-1], g.y[::-1]) < np.interp(0.0, b.x[::-1], b.y[::-1]) - 0.5
    fig = verification.score_distributions({"good": (good, labels)})
    assert [t.name for t in fig.data] == ["target", "non-target"]
    json.loads(fig.to_json())


def test_epoch_axes_get_whole_number_ticks(tmp_path):
    """Two epochs used to get ticks at 1.2, 1.4, ... (printed "1 1 1 2 2 2" with tickformat "d")."""
    h = _history(E=2)
    fig = queue.label_history_figure(h, 0)
    save_figure(fig, tmp_path, "history")
    axes = list(fig.select_xaxes())
    assert all(ax.dtick == 1 and ax.tickmode == "linear" and ax.tickformat == "d" for ax in axes)
    many = training.curves([{"epoch": e, "loss": 1.0 / e} for e in range(1, 41)], {"loss": ["loss"]})
    save_figure(many, tmp_path, "loss")
    assert many.layout.xaxis.dtick == 4  # at most 10 ticks over 40 epochs
    fractional = training.curves([{"epoch": e / 2, "loss": 1.0} for e in range(1, 5)], {"loss": ["loss"]})
    save_figure(fractional, tmp_path, "fractional")
    assert fractional.layout.xaxis.dtick is None  # not whole numbers: plotly's own ticks
    other = verification.det_figure({"a": (np.array([0.1, 0.9, 0.4, 0.6]), np.array([0, 1, 0, 1]))})
    save_figure(other, tmp_path, "det")
    assert other.layout.xaxis.tickmode != "linear"  # not an epoch axis: unchanged
