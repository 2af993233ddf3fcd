"""The error of an unusable audio file (:class:`AudioError`), shared by every reader of audio.

Its own module so that the readers (:mod:`.audio` for files, :mod:`.packed` for shards) raise the
same error without importing each other.
"""
from __future__ import annotations

#: why a file cannot be used
REASONS = ("missing", "corrupt", "empty", "silent", "nonfinite")


class AudioError(Exception):
    """An audio file that cannot be used, with the ``path`` and a ``reason`` from :data:`REASONS`."""

    def __init__(self, path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def __reduce__(self):  # picklable across DataLoader workers
        return (AudioError, (self.path, self.reason, self.detail))
