"""Per-utterance pseudo-label queue with a vectorised majority vote (SSRL stage 2).

Every utterance owns a short queue of its recent pseudo labels. The queue starts with
``seed_copies`` copies of the k-means label; after each label-update epoch the teacher's argmax
is pushed; the label used for training is the queue's mode.

Storage: ONE int32 tensor of N x L entries (1 M utterances x 5 = 20 MB) plus a fill pointer
shared by all rows (every push writes every row). It is kept column-major, shape ``(L, N)``, so
that a push writes one contiguous row and the vote works on contiguous ``(N,)`` columns; the
public views (:attr:`LabelQueue.entries`, ``state_dict()["labels"]``) are ``(N, L)``. The layout is
a *shift* queue, not a ring: entry 0 is the oldest filled entry and entry ``filled - 1`` the
newest. While the queue is not full a push writes entry ``filled``; once full, a push shifts the
entries down by one (dropping the oldest) and writes the newest into entry ``L - 1``. Entry order
therefore equals push order, which is what the recency tie-break needs.

Tie-break (the paper does not specify one), configurable with ``tie_break``:

* ``"recent"`` (default): among the labels sharing the highest count, the one pushed most
  recently (whose newest occurrence is furthest to the right) wins. With 2 seeds and one push
  ``[a, a, b]`` votes ``a``; after a second push ``[a, a, b, b]`` votes ``b``.
* ``"oldest"``: among the tied labels, the one whose FIRST occurrence is oldest (leftmost)
  wins; this is Python's ``statistics.mode`` on the list in push order, i.e. what the
  authors' script does (``[a, a, b, b]`` votes ``a``). SSRL's trainer uses it by default.
* ``"smallest"``: the smallest label id among the tied ones.

Optionally :meth:`LabelQueue.vote` takes the boolean ``active`` cluster mask: entries whose
cluster has been masked out are not counted, so the vote stays inside the active set (without
this, an old queue entry of a masked cluster could win the vote again once newer entries drop
out, and the student would be trained on a class whose logit is -inf). A row without any active
entry (not reachable in SSRL's epoch-end order; see :mod:`ssrl_lab.labels.epoch_end`) falls back to
its newest entry.

``length=1`` means "no queue": the vote is simply the latest label.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["LabelQueue", "mode_of_rows", "mode_of_columns"]

_TIE_BREAKS = ("recent", "oldest", "smallest")
_INT32_MAX = 2**31 - 1


def _check_labels(labels: Any, n: int, n_labels: int | None, what: str) -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 tensor after checking shape, dtype and range."""
    t = torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{what}: labels must be integers, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{what}: expected shape ({n},), got {tuple(t.shape)}")
    if n:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{what}: labels must be >= 0, found {lo}")
        limit = _INT32_MAX if n_labels is None else n_labels - 1
        if hi > limit:
            raise ValueError(
                f"{what}: label {hi} out of range (n_labels={n_labels})" if n_labels is not None
                else f"{what}: label {hi} does not fit int32"
            )
    return t


def mode_of_columns(
    cols: torch.Tensor,
    tie_break: str = "recent",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance mode of an ``(F, N)`` integer tensor whose rows are entries in push order.

    Counts come from the ``F (F - 1) / 2`` pairwise comparisons of the entries (``F`` is small),
    each a vectorised comparison over all N utterances; no per-utterance Python.

    Args:
        cols: ``(F, N)`` integer tensor, entry ``F - 1`` the newest.
        tie_break: ``"recent"``, ``"oldest"`` or ``"smallest"`` (see the module docstring).
        valid: optional ``(F, N)`` bool; invalid entries are neither counted nor chosen
            (an utterance with no valid entry gets its newest entry).

    Returns:
        ``(mode (N,) int64, count (N,) int64)``: the chosen label and how many of the F entries
        (valid or not) equal it.
    """
    if tie_break not in _TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {_TIE_BREAKS}, got {tie_break!r}")
    if cols.dim() != 2 or cols.shape[0] < 1:
        raise ValueError(f"cols must be (F, N) with F >= 1, got {tuple(cols.shape)}")
    f, n = cols.shape
    dev = cols.device
    # cnt[j]: how many entries equal entry j
    cnt = [torch.ones(n, dtype=torch.int32, device=dev) for _ in range(f)]
    for j in range(f):
        for i in range(j + 1, f):
            eq = cols[j] == cols[i]
            cnt[j] += eq
            cnt[i] += eq
    # rank key = count * scale + tie-break term (term in [0, scale)); invalid entries rank below
    # every valid one (negative keys), the newest of them highest
    if tie_break in ("recent", "oldest"):
        scale, dtype = f + 1, torch.int32
    else:
        scale = int(cols.max()) + 1 if n else 1
        dtype = torch.int64 if (f + 1) * scale >= 2**31 else torch.int32
    best_key = best_j = None
    for j in range(f):
        rank_c = cnt[j] if valid is None else cnt[j] * valid[j]
        if tie_break == "recent":
            key = rank_c * scale + j  # later entry wins a tie in count
        elif tie_break == "oldest":
            key = rank_c * scale + (f - 1 - j)  # earlier entry wins a tie in count
        else:
            key = rank_c.to(dtype) * scale + (scale - 1 - cols[j].to(dtype))  # smaller label wins
        if valid is not None:
            key = torch.where(valid[j], key, torch.full_like(key, j - f))
        if best_key is None:
            best_key = key
            best_j = torch.zeros(n, dtype=torch.int64, device=dev)
        else:
            better = key > best_key
            best_key = torch.where(better, key, best_key)
            best_j.masked_fill_(better, j)
    mode = cols.gather(0, best_j.unsqueeze(0)).squeeze(0).to(torch.int64)
    count = torch.stack(cnt).gather(0, best_j.unsqueeze(0)).squeeze(0).to(torch.int64)
    return mode, count


def mode_of_rows(
    rows: torch.Tensor,
    tie_break: str = "recent",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise mode of an ``(N, F)`` matrix (columns in push order): :func:`mode_of_columns` on
    its transpose. ``valid`` is ``(N, F)`` here."""
    if rows.dim() != 2:
        raise ValueError(f"rows must be (N, F), got {tuple(rows.shape)}")
    return mode_of_columns(rows.T.contiguous(), tie_break, None if valid is None else valid.T.contiguous())


class LabelQueue:
    """Fixed-length per-utterance label queue stored as one ``(N, L)`` int32 tensor.

    Args:
        n: number of utterances N.
        length: queue length L (>= 1); 1 means "no queue" (vote = latest label).
        seed_labels: ``(N,)`` initial (k-means) labels.
        seed_copies: how many copies of the seed fill the queue at the start (1..L).
        device: where the queue lives ("cpu", "cuda", a torch.device).
        tie_break: ``"recent"`` (default), ``"oldest"`` (``statistics.mode``) or ``"smallest"``.
        n_labels: optional number of clusters K; labels must then lie in ``[0, K)``.
    """

    def __init__(
        self,
        n: int,
        length: int = 5,
        seed_labels: Any = None,
        seed_copies: int = 2,
        device: str | torch.device = "cpu",
        tie_break: str = "recent",
        n_labels: int | None = None,
    ) -> None:
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"LabelQueue: n must be a non-negative int, got {n!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"LabelQueue: length must be an int >= 1, got {length!r}")
        if not isinstance(seed_copies, int) or not 1 <= seed_copies <= length:
            raise ValueError(f"LabelQueue: seed_copies must be in [1, length={length}], got {seed_copies!r}")
        if tie_break not in _TIE_BREAKS:
            raise ValueError(f"LabelQueue: tie_break must be one of {_TIE_BREAKS}, got {tie_break!r}")
        if n_labels is not None and (not isinstance(n_labels, int) or n_labels < 1):
            raise ValueError(f"LabelQueue: n_labels must be a positive int or None, got {n_labels!r}")
        if seed_labels is None:
            raise ValueError("LabelQueue: seed_labels (the k-means labels, shape (N,)) are required")
        self.n = n
        self.length = length
        self.seed_copies = seed_copies
        self.tie_break = tie_break
        self.n_labels = n_labels
        self.device = torch.device(device)
        seed = _check_labels(seed_labels, n, n_labels, "LabelQueue seed_labels").to(self.device, torch.int32)
        self._buf = torch.zeros((length, n), dtype=torch.int32, device=self.device)  # (L, N)
        self._buf[:seed_copies] = seed.unsqueeze(0)
        self._filled = seed_copies
        self._n_pushes = 0

    # ------------------------------------------------------------------ state
    @property
    def filled(self) -> int:
        """How many entries of every row hold labels (seed_copies .. length)."""
        return self._filled

    @property
    def n_pushes(self) -> int:
        """How many times :meth:`push` was called since seeding."""
        return self._n_pushes

    @property
    def entries(self) -> torch.Tensor:
        """``(N, filled)`` int32 view of the filled entries, oldest column first."""
        return self._buf[: self._filled].T

    def latest(self) -> torch.Tensor:
        """``(N,)`` int64: the newest entry of every row."""
        return self._buf[self._filled - 1].to(torch.int64)

    # ------------------------------------------------------------------ updates
    def push(self, labels: Any) -> None:
        """Append one label per utterance; once the queue is full the oldest entry drops."""
        t = _check_labels(labels, self.n, self.n_labels, "LabelQueue.push").to(self.device, torch.int32)
        if self._filled < self.length:
            self._buf[self._filled] = t
            self._filled += 1
        else:
            if self.length > 1:
                # drop the oldest entry (copy through a temporary: source and target overlap)
                self._buf[:-1] = self._buf[1:].clone()
            self._buf[-1] = t
        self._n_pushes += 1

    # ------------------------------------------------------------------ reading
    def vote_and_agreement(self, active: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mode and agreement in one pass: ``(vote (N,) int64, agreement (N,) float32)``.

        ``active`` (optional ``(K,)`` bool): entries of inactive clusters are not counted.
        Agreement is the share of the filled entries (all of them) equal to the vote.
        """
        cols = self._buf[: self._filled]
        valid = None
        if active is not None:
            act = torch.as_tensor(active, device=self.device)
            if act.dtype != torch.bool or act.dim() != 1:
                raise ValueError(f"LabelQueue: active must be a 1-D bool tensor, got {act.dtype} {tuple(act.shape)}")
            top = int(cols.max()) if self.n else -1
            if top >= act.shape[0]:
                raise ValueError(f"LabelQueue: queue holds label {top} but active has only {act.shape[0]} clusters")
            if not bool(act.all()):  # all active: nothing to mask, skip the gathers
                valid = act[cols.to(torch.int64)]
        vote, count = mode_of_columns(cols, self.tie_break, valid)
        return vote, count.to(torch.float32) / float(self._filled)

    def vote_with(self, index: torch.Tensor, labels: torch.Tensor, active: torch.Tensor | None = None,
                  window: int | None = None) -> torch.Tensor:
        """Mode of rows ``index`` with ``labels`` appended as their newest entry, queue unchanged.

        ``(B,)`` int64: the authors' in-step target ``mode((queue + [self_label])[-window:])``,
        the newest ``window`` entries of the queue with ``labels`` appended (default
        ``window = length``: a full queue drops its oldest entry for the vote, as a push would).
        ``index`` and ``labels`` are ``(B,)``; ``active`` as in :meth:`vote_and_agreement`.
        """
        window = self.length if window is None else int(window)
        if window < 1:
            raise ValueError(f"LabelQueue.vote_with: window must be >= 1, got {window}")
        idx = torch.as_tensor(index, device=self.device).to(torch.int64)
        lab = torch.as_tensor(labels, device=self.device).to(torch.int32)
        if idx.dim() != 1 or lab.shape != idx.shape:
            raise ValueError(f"LabelQueue.vote_with: index {tuple(idx.shape)} and labels {tuple(lab.shape)} must be equal 1-D shapes")
        first = max(0, self._filled - (window - 1))
        cols = torch.cat([self._buf[first: self._filled, idx], lab.unsqueeze(0)], 0)  # (<= window, B)
        valid = None
        if active is not None:
            act = torch.as_tensor(active, device=self.device)
            if act.dtype != torch.bool or act.dim() != 1:
                raise ValueError("LabelQueue.vote_with: active must be a 1-D bool tensor")
            if not bool(act.all()):
                valid = act[cols.to(torch.int64)]
        return mode_of_columns(cols, self.tie_break, valid)[0]

    def vote(self, active: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)`` int64: the label in use, the mode of every row (see module docstring)."""
        return self.vote_and_agreement(active)[0]

    def agreement(self, active: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)`` float32: share of the filled entries equal to the vote (1.0 = unanimous)."""
        return self.vote_and_agreement(active)[1]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the queue (tensor on CPU, fill pointer, settings)."""
        return {
            "labels": self._buf.T.cpu().contiguous(),  # (N, L), oldest entry first
            "filled": self._filled,
            "n_pushes": self._n_pushes,
            "length": self.length,
            "seed_copies": self.seed_copies,
            "tie_break": self.tie_break,
            "n_labels": self.n_labels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the shape (N, L) must match this queue."""
        missing = [k for k in ("labels", "filled") if k not in state]
        if missing:
            raise KeyError(f"LabelQueue.load_state_dict: missing key(s) {missing}")
        buf = torch.as_tensor(state["labels"])
        if tuple(buf.shape) != (self.n, self.length):
            raise ValueError(
                f"LabelQueue.load_state_dict: labels have shape {tuple(buf.shape)}, "
                f"this queue is ({self.n}, {self.length})"
            )
        filled = int(state["filled"])
        if not 1 <= filled <= self.length:
            raise ValueError(f"LabelQueue.load_state_dict: filled={filled} outside [1, {self.length}]")
        self._buf = buf.T.to(self.device, torch.int32).contiguous()
        self._filled = filled
        self._n_pushes = int(state.get("n_pushes", 0))
        self.seed_copies = int(state.get("seed_copies", self.seed_copies))
        self.tie_break = state.get("tie_break", self.tie_break)
        if self.tie_break not in _TIE_BREAKS:
            raise ValueError(f"LabelQueue.load_state_dict: unknown tie_break {self.tie_break!r}")

    def to(self, device: str | torch.device) -> "LabelQueue":
        """Move the queue to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        self._buf = self._buf.to(self.device)
        return self

    def __repr__(self) -> str:
        return (
            f"LabelQueue(n={self.n}, length={self.length}, filled={self._filled}, "
            f"tie_break={self.tie_break!r}, device={self.device})"
        )
