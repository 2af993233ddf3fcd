"""Listening to pseudo-label noise: cluster members least clean first, with audio players.

Audio is read with the training reader (:func:`ssrl_lab.data.audio.load_audio`: wav, flac and
VoxCeleb2's m4a, resampled to 16 kHz mono) only when a player is built, one page at a time.
An unreadable file never stops a cell: its row shows a note naming the reason instead of a
player, and the skip is logged and counted.

* :func:`members` - a cluster's members at one epoch, least clean first: utterance, p_clean,
  queue agreement, true speaker name (not its code) and whether the cluster's majority is that
  speaker.
* :class:`MemberList` - a paged ipywidgets table (20 rows a page) with an ``Audio`` player per row.
* :func:`player` - one ``ipywidgets.Audio`` (or an ``HTML`` note when the file is unreadable).
* :func:`embedded_players` - an HTML table with the audio embedded (``<audio src="data:...">``),
  for executed notebooks read without a kernel (``03_ssrl``'s noise section).
"""
from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.audio import SAMPLE_RATE, AudioError, load_audio

log = logging.getLogger("ssrl_lab.viz.listen")

PAGE_SIZE = 20


@dataclass
class Member:
    """One utterance of a cluster at one epoch (``speaker``: the true name, ``"-"`` when unknown)."""

    utt_id: str
    path: str | None
    label: int
    p_clean: float
    queue_agreement: float
    speaker: str
    majority: str
    loss: float = float("nan")

    @property
    def matches_majority(self) -> bool | None:
        """Whether the cluster's majority speaker is this utterance's (None when either is unknown)."""
        if self.speaker == "-" or self.majority == "-":
            return None
        return self.speaker == self.majority


class Skips:
    """Counts unreadable files met while building players (``count``, ``notes``)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @property
    def count(self) -> int:
        return len(self.notes)

    def add(self, utt_id: str, err: Exception) -> str:
        note = f"skipped {utt_id}: {err}"
        self.notes.append(note)
        log.warning("%s", note)
        return note


def wav_bytes(path, max_s: float | None = None) -> bytes:
    """The file as 16 kHz mono 16-bit WAV bytes (first ``max_s`` seconds when given); raises AudioError."""
    import soundfile as sf

    wave = load_audio(path, dur_s=max_s) if max_s is not None else load_audio(path)
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _name(code: int, names: Sequence[str] | None) -> str:
    if code is None or code < 0:
        return "-"
    if names is not None and 0 <= code < len(names):
        return str(names[code])
    return f"speaker {code}"


def members(aligned: dict, utt_id, cluster: int, names: Sequence[str] | None = None,
            paths: dict[str, str] | None = None) -> list[Member]:
    """Members of ``cluster`` in ``aligned`` (:meth:`ssrl_lab.runs.Run.history_aligned` of
    ``utt_id``), least clean first (p_clean ascending, unknown p_clean last, then utt_id).

    ``names``: speaker names indexed by the history's codes (``UtteranceTable.speaker_codes()[1]``);
    ``paths``: utt_id -> audio file. Raises KeyError when the cluster has no member.
    """
    utt = np.asarray(utt_id).astype(str)
    labels = np.asarray(aligned["labels"])
    idx = np.flatnonzero(labels == int(cluster))
    if idx.size == 0:
        raise KeyError(f"cluster {cluster} has no members at epoch {aligned.get('epoch')}")
    true = np.asarray(aligned["true"])
    known = true[idx][true[idx] >= 0]
    majority = _name(int(np.bincount(known).argmax()), names) if known.size else "-"
    p = np.asarray(aligned["p_clean"], dtype=np.float64)
    order = sorted(idx.tolist(), key=lambda i: (np.isnan(p[i]), p[i] if np.isfinite(p[i]) else 0.0, utt[i]))
    qa = np.asarray(aligned["queue_agreement"], dtype=np.float64)
    loss = np.asarray(aligned.get("loss", np.full(utt.shape[0], np.nan)), dtype=np.float64)
    return [Member(utt[i], (paths or {}).get(utt[i]), int(labels[i]), float(p[i]), float(qa[i]),
                   _name(int(true[i]), names), majority, float(loss[i])) for i in order]


def player(path, utt_id: str = "", skips: Skips | None = None, autoplay: bool = False, max_s: float | None = None):
    """An ``ipywidgets.Audio`` of the file, or an ``ipywidgets.HTML`` note when it cannot be read."""
    import ipywidgets as w

    skips = skips if skips is not None else Skips()
    if path is None:
        return w.HTML(html.escape(skips.add(utt_id, AudioError(utt_id, "missing", "not in the corpus table"))))
    try:
        data = wav_bytes(path, max_s)
    except AudioError as e:
        return w.HTML(f"<i>{html.escape(skips.add(utt_id or str(path), e))}</i>")
    return w.Audio(value=data, format="wav", autoplay=autoplay, loop=False,
                   layout=w.Layout(width="300px", height="32px"))


def _fmt(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else "-"


COLUMNS = ("utterance", "p_clean", "queue agr.", "true speaker", "cluster majority", "audio")


class MemberList:
    """A paged table of :class:`Member` rows with an audio player each (built page by page)."""

    def __init__(self, rows: Sequence[Member], page_size: int = PAGE_SIZE, title: str = "") -> None:
        import ipywidgets as w

        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.rows = list(rows)
        self.page_size = page_size
        self.page = 0
        self.skips = Skips()
        self.title = title
        self.prev = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self.next = w.Button(description="next ▶", layout=w.Layout(width="110px"))
        self.status = w.HTML()
        self.body = w.VBox()
        self.prev.on_click(lambda _: self.show(self.page - 1))
        self.next.on_click(lambda _: self.show(self.page + 1))
        self.widget = w.VBox([w.HBox([self.prev, self.next, self.status]), self.body])
        self.show(0)

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.rows) // self.page_size))

    def show(self, page: int) -> None:
        import ipywidgets as w

        self.page = int(np.clip(page, 0, self.n_pages - 1))
        lo = self.page * self.page_size
        part = self.rows[lo:lo + self.page_size]
        cell = w.Layout(width="130px")
        widths = {"utterance": "260px", "audio": "300px"}
        head = w.HBox([w.HTML(f"<b>{c}</b>", layout=w.Layout(width=widths.get(c, "130px"))) for c in COLUMNS])
        lines = [head]
        for m in part:
            mark = "" if m.matches_majority in (None, True) else " ⚠"
            lines.append(w.HBox([
                w.HTML(f"<code>{html.escape(m.utt_id)}</code>", layout=w.Layout(width="260px", overflow="hidden")),
                w.HTML(_fmt(m.p_clean), layout=cell), w.HTML(_fmt(m.queue_agreement), layout=cell),
                w.HTML(html.escape(m.speaker) + mark, layout=cell), w.HTML(html.escape(m.majority), layout=cell),
                player(m.path, m.utt_id, self.skips)]))
        self.body.children = lines
        self.prev.disabled = self.page == 0
        self.next.disabled = self.page >= self.n_pages - 1
        skipped = f"; {self.skips.count} unreadable file(s) skipped" if self.skips.count else ""
        self.status.value = (f"{html.escape(self.title)} page {self.page + 1} of {self.n_pages} "
                             f"({len(self.rows)} members, least clean first; ⚠ = not the majority speaker){skipped}")


def embedded_players(rows: Sequence[Member], title: str = "", max_s: float | None = 8.0) -> str:
    """An HTML table of ``rows`` with each file embedded as a base64 WAV ``<audio>`` (first
    ``max_s`` seconds); unreadable files get a note in place of the player."""
    skips = Skips()
    out = [f"<h4>{html.escape(title)}</h4>" if title else "",
           "<table><tr>" + "".join(f"<th>{c}</th>" for c in ("utterance", "pseudo label", "p_clean", "queue agr.",
                                                             "true speaker", "cluster majority", "audio")) + "</tr>"]
    for m in rows:
        try:
            if m.path is None:
                raise AudioError(m.utt_id, "missing", "not in the corpus table")
            b64 = base64.b64encode(wav_bytes(m.path, max_s)).decode("ascii")
            audio = f'<audio controls preload="none" src="data:audio/wav;base64,{b64}"></audio>'
        except AudioError as e:
            audio = f"<i>{html.escape(skips.add(m.utt_id, e))}</i>"
        out.append(f"<tr><td><code>{html.escape(m.utt_id)}</code></td><td>c{m.label}</td><td>{_fmt(m.p_clean)}</td>"
                   f"<td>{_fmt(m.queue_agreement)}</td><td>{html.escape(m.speaker)}</td>"
                   f"<td>{html.escape(m.majority)}</td><td>{audio}</td></tr>")
    out.append("</table>")
    if skips.count:
        out.append(f"<p>{skips.count} unreadable file(s) skipped.</p>")
    return "\n".join(out)


def clean_extremes(aligned: dict, utt_id, n: int = 5, names: Sequence[str] | None = None,
                   paths: dict[str, str] | None = None) -> tuple[list[Member], list[Member]]:
    """The ``n`` least-clean and the ``n`` cleanest utterances (by p_clean) of ``aligned``."""
    utt = np.asarray(utt_id).astype(str)
    p = np.asarray(aligned["p_clean"], dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return [], []
    order = ok[np.lexsort((utt[ok], p[ok]))]
    labels = np.asarray(aligned["labels"])
    true = np.asarray(aligned["true"])

    def member(i: int) -> Member:
        same = true[(labels == labels[i]) & (true >= 0)]
        majority = _name(int(np.bincount(same).argmax()), names) if same.size else "-"
        return Member(utt[i], (paths or {}).get(utt[i]), int(labels[i]), float(p[i]),
                      float(aligned["queue_agreement"][i]), _name(int(true[i]), names), majority,
                      float(aligned["loss"][i]))

    k = min(n, order.size)
    return [member(i) for i in order[:k]], [member(i) for i in order[::-1][:k]]
