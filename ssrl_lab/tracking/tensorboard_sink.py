"""TensorBoard back-end: scalars, histograms and hparams in event files under ``<run_dir>/tb/``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .fields import flat_config, scalars
from .tracker import Sink

#: the folder of a run's event files, inside the run directory
TB_DIR = "tb"
#: prefix of the final results' scalars (the HParams tab's metric columns)
FINAL = "final/"


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, maybe on the GPU
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).ravel()


class TensorBoardSink(Sink):
    """One TensorBoard run per run directory (``torch.utils.tensorboard.SummaryWriter``).

    Every line's scalars at its step; each histogram (SSRL: ``p_clean`` after every label update);
    at the end the run's config as hparams with the final results as their metrics
    (``final/eer``, ...), so the HParams tab compares a sweep. A resumed run appends to the same
    folder with ``purge_step`` = its first step: events a killed attempt wrote from there on are
    hidden from TensorBoard, so no step appears twice. Events are flushed after every line.
    """

    name = "tensorboard"

    def __init__(self, run_dir, config: Mapping[str, Any]) -> None:
        self.dir = Path(run_dir) / TB_DIR
        self.config = dict(config)
        self.writer = None

    def open(self, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        earlier = self.dir.is_dir() and any(self.dir.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(self.dir), purge_step=first_step if earlier else None, flush_secs=60)

    def log(self, step: int, values: dict[str, float], histograms: Mapping[str, Any]) -> None:
        w = self.writer
        for key, v in values.items():
            w.add_scalar(key, v, step)
        for key, arr in histograms.items():
            a = _array(arr)
            if a.size:
                w.add_histogram(key, a, step)
        w.flush()

    def finish(self, step: int, results: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {FINAL + k: v for k, v in scalars(results).items()}
        exp, ssi, sei = hparams(flat_config(self.config), final)
        fw = self.writer._get_file_writer()  # the run's own folder (add_hparams would open a new one)
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)
        for key, v in final.items():
            self.writer.add_scalar(key, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
