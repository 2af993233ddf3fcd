"""The run's own teacher space over epochs, as ``05_explore`` shows it.

:class:`TeacherSpace` reads a run's teacher snapshots (``embeddings/snapshots/teacher_eNNNN.npz``,
written by DINO and SSRL at their evaluation epochs; see :mod:`ssrl_lab.train.snapshots`). An
SSRL run's ``embeddings/dino_train.npz`` (the DINO model's embeddings that k-means clustered) is
its epoch 0. Every epoch is mapped on the same utterances (those in every snapshot, at most
``cap``, a seeded subsample) with one joint fit, so that moving from one epoch to the next moves
the points:

* ``method="umap"``: umap-learn's ``AlignedUMAP`` over the epochs (PCA to 50 dimensions first;
  consecutive epochs are tied by the identity relation, the same utterance in both).
* ``method="pca"``: a 2-D PCA per epoch, each rotated / reflected onto the previous one
  (orthogonal Procrustes). Instant; for smoke runs and tests.

Projections are cached per (run, epoch) in ``embeddings/projections/<method>-<key>/eNNNN.npz``;
the key covers the settings and every snapshot file (size and mtime), so a new snapshot or other
settings recompute them.

:class:`Explorer` is the interactive explorer: a plotly ``FigureWidget`` drawn at once and
updated in place (same figure, new coordinates and colours) when the run, the epoch or the
colouring changes; a cluster picker with its members, least clean first, and audio players
(:class:`ssrl_lab.viz.listen.MemberList`); a click on a point plays that utterance and shows its
label history.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..runs import Run, RunError
from ..utils.io import atomic_numpy_save
from .embedding import PCA_DIM, category_colors, subsample

log = logging.getLogger("ssrl_lab.viz.explore")

METHODS = ("umap", "pca")
START_NAME = "dino_train"  # SSRL's k-means input: the DINO model, its epoch 0
MAP_META = "ssrl-lab-explorer-map"


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["emb"].astype(np.float32), z["utt_id"].astype(str)
    except (OSError, KeyError, ValueError) as e:
        raise RunError(f"{path}: unreadable snapshot ({e})") from None


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def aligned_pca(xs: Sequence[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """2-D PCA of each epoch, each rotated onto the previous one (orthogonal Procrustes)."""
    from scipy.linalg import orthogonal_procrustes
    from sklearn.decomposition import PCA

    out: list[np.ndarray] = []
    for x in xs:
        n_comp = min(2, x.shape[0], x.shape[1])
        z = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
        if z.shape[1] < 2:
            z = np.concatenate([z, np.zeros((z.shape[0], 2 - z.shape[1]))], axis=1)
        z = z / max(float(np.sqrt((z ** 2).sum(1).mean())), 1e-12)
        if out:
            r, _ = orthogonal_procrustes(z, out[-1])
            z = z @ r
        out.append(z)
    return out


def aligned_umap(xs: Sequence[np.ndarray], seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> list[np.ndarray]:
    """umap-learn's AlignedUMAP over the epochs (rows are the same utterances in every epoch)."""
    from sklearn.decomposition import PCA
    from umap import AlignedUMAP

    zs = []
    for x in xs:
        n_comp = min(PCA_DIM, x.shape[0], x.shape[1])
        zs.append(PCA(n_components=n_comp, random_state=seed).fit_transform(x))
    n = zs[0].shape[0]
    nn = max(2, min(n_neighbors, n - 1))
    if len(zs) == 1:
        import umap

        return [umap.UMAP(n_neighbors=nn, min_dist=min_dist, random_state=seed, n_jobs=1).fit_transform(zs[0])]
    ident = {i: i for i in range(n)}
    reducer = AlignedUMAP(n_neighbors=nn, min_dist=min_dist, random_state=seed)
    reducer.fit(zs, relations=[ident] * (len(zs) - 1))
    return [np.asarray(e, dtype=np.float64) for e in reducer.embeddings_]


class TeacherSpace:
    """A run's teacher embeddings over epochs, projected jointly to 2-D (see the module doc)."""

    def __init__(self, run: Run | str | Path, method: str = "umap", cap: int = 5000, seed: int = 0,
                 n_neighbors: int = 15, min_dist: float = 0.1) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if cap < 3:
            raise ValueError(f"cap must be >= 3 points, got {cap}")
        self.run = run if isinstance(run, Run) else Run(Path(run))
        self.method, self.cap, self.seed = method, int(cap), int(seed)
        self.n_neighbors, self.min_dist = int(n_neighbors), float(min_dist)
        self.files: dict[int, Path] = dict(self.run.snapshots())
        start = self.run.path / "embeddings" / f"{START_NAME}.npz"
        if 0 not in self.files and start.exists() and self.run.history() is not None:
            self.files = {0: start, **self.files}
        if not self.files:
            raise RunError(f"{self.run.path} holds no teacher snapshots (embeddings/snapshots/): train it with "
                           "snapshots.enabled=true (the default) to map its teacher over epochs")
        self._xy: dict[int, np.ndarray] = {}
        self._utt: np.ndarray | None = None

    # -- what is shown ------------------------------------------------------------------
    @property
    def epochs(self) -> list[int]:
        return list(self.files)

    @property
    def system(self) -> str:
        return self.run.system

    def model_name(self, epoch: int) -> str:
        """What the map of ``epoch`` shows, e.g. ``"ssrl teacher, epoch 6"``."""
        if self.files[epoch].stem == START_NAME:
            return f"{self.system}: DINO model it started from (k-means input), epoch 0"
        return f"{self.system} teacher, epoch {epoch}"

    def key(self) -> str:
        parts = {"method": self.method, "cap": self.cap, "seed": self.seed, "nn": self.n_neighbors,
                 "min_dist": self.min_dist,
                 "files": [[e, p.name, p.stat().st_size, p.stat().st_mtime_ns] for e, p in self.files.items()]}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def cache_dir(self) -> Path:
        return self.run.path / "embeddings" / "projections" / f"{self.method}-{self.key()}"

    # -- projections ----------------------------------------------------------------------
    def _from_cache(self) -> bool:
        d = self.cache_dir
        xy, utt = {}, None
        for e in self.epochs:
            p = d / f"e{e:04d}.npz"
            if not p.exists():
                return False
            try:
                with np.load(p, allow_pickle=False) as z:
                    xy[e], u = z["xy"].astype(np.float64), z["utt_id"].astype(str)
            except (OSError, KeyError, ValueError):
                return False
            if utt is not None and not np.array_equal(u, utt):
                return False
            utt = u
        self._xy, self._utt = xy, utt
        return True

    def _compute(self) -> None:
        loaded = {e: _load(p) for e, p in self.files.items()}
        last = loaded[self.epochs[-1]][1]
        common = set(last)
        for emb, utt in loaded.values():
            ok = np.isfinite(emb).all(1)
            common &= set(utt[ok])
        utt_all = np.array([u for u in last if u in common])
        if utt_all.size < 3:
            raise RunError(f"{self.run.path}: fewer than 3 utterances are in every snapshot")
        utt = utt_all[subsample(utt_all.size, self.cap, self.seed)]
        xs = []
        for e in self.epochs:
            emb, u = loaded[e]
            pos = {v: i for i, v in enumerate(u)}
            xs.append(_normalise(emb[[pos[v] for v in utt]]))
        if self.method == "pca":
            maps = aligned_pca(xs, self.seed)
        else:
            maps = aligned_umap(xs, self.seed, self.n_neighbors, self.min_dist)
        d = self.cache_dir
        for e, z in zip(self.epochs, maps):
            atomic_numpy_save(d / f"e{e:04d}.npz", xy=np.asarray(z[:, :2], np.float64), utt_id=utt)
        self._xy = {e: np.asarray(z[:, :2], np.float64) for e, z in zip(self.epochs, maps)}
        self._utt = utt
        log.info("%s: %s of %d utterances over epochs %s cached in %s", self.run.path, self.method, utt.size,
                 self.epochs, d)

    def projection(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(xy (M, 2), utt_id (M,))`` of ``epoch`` (computed once for all epochs, then cached)."""
        if epoch not in self.files:
            raise KeyError(f"epoch {epoch} has no snapshot in {self.run.path}; available: {self.epochs}")
        if not self._xy and not self._from_cache():
            self._compute()
        return self._xy[epoch], self._utt

    @property
    def n_total(self) -> int:
        return int(_load(self.files[self.epochs[-1]])[0].shape[0])

    def describe(self) -> str:
        n = 0 if self._utt is None else self._utt.size
        return f"{'AlignedUMAP' if self.method == 'umap' else 'aligned PCA'} of {n:,} utterances"

    # -- colours --------------------------------------------------------------------------
    def colorings(self, epoch: int, speaker_names: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], dict | None]:
        """Colourings of ``epoch``'s map points and the aligned history (None without history).

        ``pseudo label``, ``p_clean`` and ``queue agreement`` come from the history row of
        ``epoch`` (or the last one before it; the title says which); ``true speaker`` from the
        history's codes (names when ``speaker_names`` is given).
        """
        _, utt = self.projection(epoch)
        al = self.run.history_aligned(utt, epoch)
        out: dict[str, np.ndarray] = {}
        if al is not None:
            out["pseudo label"] = al["labels"]
            t = al["true"]
            out["true speaker"] = (np.array([speaker_names[c] if c >= 0 else "-" for c in t], dtype=object)
                                   if speaker_names is not None else t)
            out["p_clean"] = al["p_clean"]
            out["queue agreement"] = al["queue_agreement"]
        return out, al


def _marker(values: np.ndarray, name: str, size: int) -> tuple[dict, list[str]]:
    values = np.asarray(values)
    if values.dtype.kind in "iubUSO":
        return dict(size=size, color=category_colors(values), showscale=False), [str(v) for v in values.tolist()]
    v = values.astype(np.float64)
    return (dict(size=size, color=v, colorscale="Viridis", showscale=True, colorbar=dict(title=dict(text=name))),
            [f"{a:.3f}" for a in v.tolist()])


def map_title(space: TeacherSpace, epoch: int, color: str, history_epoch: int | None) -> str:
    t = f"{space.model_name(epoch)} — colour: {color}"
    if history_epoch is not None and history_epoch != epoch and color != "true speaker":
        t += f" (labels of epoch {history_epoch})"
    return t + f" — {space.describe()}"


def map_figure(xy: np.ndarray, utt: np.ndarray, values: np.ndarray, color: str, title: str, widget: bool = False,
               marker_size: int = 6):
    """One scatter of the map (a ``FigureWidget`` when ``widget``); see :func:`update_map`."""
    marker, shown = _marker(values, color, marker_size)
    trace = go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, customdata=np.arange(len(utt)),
                         text=[f"{u}<br>{color}: {s}" for u, s in zip(utt, shown)], hoverinfo="text", showlegend=False)
    fig = (go.FigureWidget if widget else go.Figure)(data=[trace])
    fig.update_layout(title=dict(text=title), meta=MAP_META, xaxis=dict(showticklabels=False, title=None),
                      yaxis=dict(showticklabels=False, scaleanchor="x"), height=600, margin=dict(t=70),
                      uirevision="map")
    return fig


def update_map(fig, xy: np.ndarray, utt: np.ndarray, values: np.ndarray, color: str, title: str,
               marker_size: int = 6) -> None:
    """Replace the map's points, colours and title in place (one batched update)."""
    marker, shown = _marker(values, color, marker_size)
    with fig.batch_update():
        tr = fig.data[0]
        tr.x, tr.y = xy[:, 0], xy[:, 1]
        tr.marker = marker
        tr.customdata = np.arange(len(utt))
        tr.text = [f"{u}<br>{color}: {s}" for u, s in zip(utt, shown)]
        fig.layout.title = dict(text=title)


def epoch_figure(space: TeacherSpace, epoch: int, color: str | None = None, speaker_names=None, widget: bool = False):
    """The map of ``epoch`` coloured by ``color`` (default: pseudo label, else true speaker)."""
    xy, utt = space.projection(epoch)
    cols, al = space.colorings(epoch, speaker_names)
    if not cols:
        cols = {"true speaker": np.full(utt.shape[0], "-", dtype=object)}
    color = color if color in cols else next(iter(cols))
    return map_figure(xy, utt, cols[color], color,
                      map_title(space, epoch, color, al["epoch"] if al else None), widget=widget)


class Explorer:
    """The interactive explorer (needs a live kernel for callbacks; draws its initial state at once).

    ``runs``: run directories to choose from; ``run``: the initial one; ``corpus``: the corpus
    folder for speaker names and audio paths (None: each run's ``config["corpus"]``).
    """

    def __init__(self, runs: Sequence[str], run: str, method: str = "umap", cap: int = 5000, corpus=None,
                 epoch: int | None = None, cluster: int | None = None, page_size: int = 20) -> None:
        import ipywidgets as w

        self.method, self.cap, self.corpus, self.page_size = method, cap, corpus, page_size
        options = list(dict.fromkeys([str(run), *map(str, runs)]))
        self.w_run = w.Dropdown(options=options, value=str(run), description="run", layout=w.Layout(width="480px"))
        self.w_epoch = w.SelectionSlider(options=[0], description="epoch", continuous_update=False)
        self.w_color = w.Dropdown(options=["pseudo label"], description="colour by")
        self.w_cluster = w.Dropdown(options=[], description="cluster", layout=w.Layout(width="380px"))
        self.status = w.HTML()
        self.members_box = w.VBox()
        self.clicked = w.Output()
        self._busy = False
        self.fig = None
        self._load_run(str(run), epoch, cluster)
        self.w_run.observe(lambda ch: self._load_run(ch["new"], None, None), names="value")
        self.w_epoch.observe(lambda ch: self.refresh(), names="value")
        self.w_color.observe(lambda ch: self.refresh(keep_cluster=True), names="value")
        self.w_cluster.observe(lambda ch: self.show_cluster(), names="value")
        self.widget = w.VBox([w.HBox([self.w_run, self.w_epoch]), w.HBox([self.w_color, self.w_cluster]),
                              self.status, self.fig, w.HTML("<b>clicked utterance</b> (click a point)"), self.clicked,
                              w.HTML("<b>cluster members</b>"), self.members_box])

    # -- state ------------------------------------------------------------------------------
    def _load_run(self, path: str, epoch: int | None, cluster: int | None) -> None:
        from ..data.corpus import open_corpus
        from ..notebook_params import resolve_path

        self.space = TeacherSpace(path, self.method, self.cap)
        corpus_dir = self.corpus or self.space.run.config.get("corpus")
        self.names, self.paths = None, {}
        if corpus_dir:
            try:
                train = open_corpus(resolve_path(corpus_dir)).train
                self.names = train.speaker_codes()[1]
                self.paths = dict(zip(train.utt_id, train.path))
            except (OSError, ValueError) as e:  # no corpus: maps still draw, players note the gap
                log.warning("corpus %s unavailable (%s): no speaker names or audio", corpus_dir, e)
        eps = self.space.epochs
        self._busy = True
        try:
            self.w_epoch.options = eps
            self.w_epoch.value = epoch if epoch in eps else eps[-1]
        finally:
            self._busy = False
        self.refresh(cluster=cluster)

    @property
    def epoch(self) -> int:
        return int(self.w_epoch.value)

    def refresh(self, cluster: int | None = None, keep_cluster: bool = False) -> None:
        """Redraw the map for the current run / epoch / colouring, in place."""
        if self._busy:
            return
        xy, utt = self.space.projection(self.epoch)
        cols, al = self.space.colorings(self.epoch, self.names)
        if not cols:
            cols = {"true speaker": np.full(utt.shape[0], "-", dtype=object)}
        self._busy = True
        try:
            self.w_color.options = list(cols)
            if self.w_color.value not in cols:
                self.w_color.value = next(iter(cols))
        finally:
            self._busy = False
        color = self.w_color.value
        title = map_title(self.space, self.epoch, color, al["epoch"] if al else None)
        self.utt, self.aligned = utt, al
        if self.fig is None:
            self.fig = map_figure(xy, utt, cols[color], color, title, widget=True)
            self.fig.data[0].on_click(self._on_click)
        else:
            update_map(self.fig, xy, utt, cols[color], color, title)
        self.status.value = (f"{html_escape(self.space.model_name(self.epoch))}; snapshots at epochs "
                             f"{self.space.epochs}; {self.space.describe()} (of {self.space.n_total:,} in the snapshot)")
        if not keep_cluster:
            self._cluster_options(cluster)

    def _cluster_options(self, cluster: int | None) -> None:
        from .clusters import cluster_purity

        al = self.aligned
        if al is None:
            self.w_cluster.options = []
            self.members_box.children = []
            return
        h = self.space.run.history()
        lab, true = np.asarray(h["labels"])[al["row"]], np.asarray(h["true"])
        ids, sizes = np.unique(lab, return_counts=True)
        cp = cluster_purity(lab, true)
        pur = {int(c): float(p) for c, p in zip(cp.cluster, cp.purity)}
        order = np.argsort(-sizes, kind="stable")
        opts = [(f"c{int(ids[i])}: {int(sizes[i])} utts" + (f", purity {pur[int(ids[i])]:.2f}" if int(ids[i]) in pur else ""),
                 int(ids[i])) for i in order]
        prev = self.w_cluster.value
        self._busy = True
        try:
            self.w_cluster.options = opts
            values = [v for _, v in opts]
            want = cluster if cluster in values else (prev if prev in values else (values[0] if values else None))
            self.w_cluster.value = want
        finally:
            self._busy = False
        self.show_cluster()

    def show_cluster(self) -> None:
        """List the selected cluster's members (all of them, not only those on the map)."""
        from . import listen

        if self._busy or self.w_cluster.value is None:
            return
        h = self.space.run.history()
        if h is None:
            return
        utt_h = np.asarray(h["utt_id"]).astype(str)
        al = self.space.run.history_aligned(utt_h, self.epoch)
        try:
            rows = listen.members(al, utt_h, int(self.w_cluster.value), self.names, self.paths)
        except KeyError as e:
            import ipywidgets as w

            self.members_box.children = [w.HTML(html_escape(str(e)))]
            return
        self.member_list = listen.MemberList(rows, self.page_size, title=f"cluster c{self.w_cluster.value}, "
                                                                          f"labels of epoch {al['epoch']}:")
        self.members_box.children = [self.member_list.widget]

    def _on_click(self, trace, points, selector) -> None:
        if not points.point_inds:
            return
        self.play(str(self.utt[points.point_inds[0]]))

    def play(self, utt_id: str) -> None:
        """Play ``utt_id`` and show its label history below the map."""
        from IPython.display import HTML as HTMLText
        from IPython.display import display

        from . import listen

        self.clicked.clear_output(wait=True)
        with self.clicked:
            display(HTMLText(f"now playing <code>{html_escape(utt_id)}</code>"))
            display(listen.player(self.paths.get(utt_id), utt_id, autoplay=True))
            fig = self.history_figure(utt_id)
            if fig is not None:
                display(go.FigureWidget(fig))

    def history_figure(self, utt_id: str) -> go.Figure | None:
        """``utt_id``'s label history in the shown run (true speaker by name where the corpus
        names it); None when the run has no history of it."""
        from .queue import label_history_figure

        h = self.space.run.history()
        col = np.flatnonzero(np.asarray(h["utt_id"]).astype(str) == utt_id) if h is not None else []
        if not len(col):
            return None
        return label_history_figure(h, int(col[0]), utt_id, speaker_names=self.names)


def html_escape(s: str) -> str:
    import html

    return html.escape(s)
