"""In-process index of enrolled embeddings for the duplicate-face check.

Loaded once per task from the store, then kept current as the task enrolls or replaces faces, so
that two users of the same batch with the same face are caught too. A search is one matrix-vector
product over contiguous float32 rows.
"""

from __future__ import annotations

import numpy as np

from facebatch_gui.core.store.base import GallerySnapshot


class Gallery:
    def __init__(self, dim: int, snapshot: GallerySnapshot | None = None) -> None:
        self.dim = dim
        n = len(snapshot.user_ids) if snapshot else 0
        self._matrix = np.zeros((max(64, n * 2), dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        if snapshot and n:
            if snapshot.embeddings.shape[1] != dim:
                raise ValueError("Gallery snapshot has another embedding size")
            self._matrix[:n] = snapshot.embeddings
            self._ids = list(snapshot.user_ids)
            self._row = {uid: i for i, uid in enumerate(self._ids)}

    def __len__(self) -> int:
        return len(self._ids)

    def best_match(self, embedding: np.ndarray, exclude: str | None = None) -> tuple[str, float]:
        """The most similar other user and the cosine similarity; ('', -1.0) when empty."""
        n = len(self._ids)
        if n == 0:
            return "", -1.0
        sims = self._matrix[:n] @ embedding.astype(np.float32, copy=False)
        if exclude is not None and exclude in self._row:
            sims[self._row[exclude]] = -2.0
        best = int(np.argmax(sims))
        if sims[best] <= -2.0:
            return "", -1.0
        return self._ids[best], float(sims[best])

    def upsert(self, user_id: str, embedding: np.ndarray) -> None:
        row = self._row.get(user_id)
        if row is None:
            row = len(self._ids)
            if row == self._matrix.shape[0]:
                grown = np.zeros((row * 2, self.dim), dtype=np.float32)
                grown[:row] = self._matrix
                self._matrix = grown
            self._ids.append(user_id)
            self._row[user_id] = row
        self._matrix[row] = embedding

    def remove(self, user_id: str) -> None:
        row = self._row.pop(user_id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
