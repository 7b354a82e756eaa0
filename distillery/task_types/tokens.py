"""Token ids of many rows kept compact: a split is tokenised ``CHUNK_ROWS`` rows at a time and its token
fields are held as flat int32 arrays with row offsets. As the tokenizer's Python lists a row of 30 tokens
costs about 4 KB; here 360 bytes (300,000 tweets: 2.5 GB against 270 MB)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

CHUNK_ROWS = 8192
# characters a chunk may hold: cutting a long text, a fast tokenizer still builds every window of the rest of it
# (about 170 bytes a token), so 8,192 texts of 50,000 characters would have taken 13.5 GB at once
CHUNK_CHARACTERS = 4_000_000


def chunks(frame: pd.DataFrame, characters: "pd.Series | None" = None) -> list[tuple[int, pd.DataFrame]]:
    """(first row's position, rows) of ``frame`` in chunks of at most ``CHUNK_ROWS`` rows and, given each row's
    ``characters``, at most ``CHUNK_CHARACTERS`` characters (a longer row alone); one empty chunk for no rows."""
    if not len(frame):
        return [(0, frame)]
    sizes = np.zeros(len(frame), dtype=np.int64) if characters is None else \
        np.nan_to_num(np.asarray(characters, dtype=np.float64)).astype(np.int64)  # a missing text: 0 characters
    out, start = [], 0
    while start < len(frame):
        within = np.cumsum(sizes[start:start + CHUNK_ROWS])
        stop = start + max(1, int(np.searchsorted(within, CHUNK_CHARACTERS, side="right")))
        out.append((start, frame.iloc[start:stop]))
        start = stop
    return out


class TokenArrays:
    """Token fields (``input_ids``, ``attention_mask``, ...) of rows added chunk by chunk, read back by row."""

    def __init__(self):
        self.keys: list[str] = []
        self._parts: dict[str, list] = {}
        self._lengths: list[np.ndarray] = []
        self._flat: dict[str, np.ndarray] | None = None

    def add(self, encoded) -> None:
        """Append the rows of one tokenizer call (a mapping of field -> one list of ids per row)."""
        self.keys = self.keys or list(encoded.keys())
        for key in self.keys:
            self._parts.setdefault(key, []).append(np.fromiter(itertools.chain.from_iterable(encoded[key]),
                                                               dtype=np.int32))
        self._lengths.append(np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64))
        self._flat = None

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)

    def rows(self, index) -> list[dict]:
        """The rows at ``index``, each ``{field: list of ids}`` as the tokenizer gave them."""
        if self._flat is None:
            self._flat = {key: np.concatenate(parts) for key, parts in self._parts.items()}
            self._parts = {key: [flat] for key, flat in self._flat.items()}
            self._offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        return [{key: self._flat[key][self._offsets[i]:self._offsets[i + 1]].tolist() for key in self.keys}
                for i in index]
