"""L3 on the verified corpora (tests/corpus/semantic): hit rate on equivalent pairs, false hits on
near misses, and what the embedding adds over the canonical form.

    .venv/bin/python bench/semantic_corpus.py            # MiniLM and n-gram, + similarity study
    .venv/bin/python bench/semantic_corpus.py --model ngram --no-study

For each pair (a, b), on PostgreSQL (schema.sql loaded into the test database), with every tier
flushed before the pair: run ``a`` through a wrapped connection with L3 on for every read (a miss:
filled into L2 and indexed in L3), wait for the index, run ``b``. ``b``'s status says who answered:
``hit:L1``/``hit:L2`` (plain normalization already equated the texts), ``hit:L3``, or ``miss``.
Every answer of ``b`` is compared with ``b`` run on an uncached connection: same column names in
the same order, same rows (ordered when ``b`` has ORDER BY). On the near-miss corpus any hit is a
false hit.

The similarity study embeds both texts of every pair with MiniLM as written (what a semantic cache
that trusts similarity does) and reports, per threshold, the share of equivalent pairs and of near
misses that would pass; and the same with each statement's canonical form embedded.

The evaluation itself is ``querycache.testing.semantic_eval`` (tests/test_semantic_eval.py runs it too).
Writes ``bench/results/semantic_corpus.json`` and ``.md`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from querycache.semantic.canonical import Ineligible, canonicalize  # noqa: E402
from querycache.testing.corpus import load_pairs  # noqa: E402
from querycache.testing.semantic_eval import evaluate, hit_rates  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CORPUS_DIR = ROOT / "tests" / "corpus" / "semantic"  # the corpora's data, checked by tests/test_semantic_corpus.py
EQUIVALENT = load_pairs(CORPUS_DIR / "equivalent.yaml")
NEAR_MISS = load_pairs(CORPUS_DIR / "near_miss.yaml")
PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def load_schema(conn: Any) -> None:
    conn.execute((CORPUS_DIR / "schema.sql").read_text(encoding="utf-8"))


def similarity_study(thresholds: list[float]) -> dict[str, Any]:
    """Share of pairs a similarity threshold alone would accept, texts as written vs canonical."""
    import numpy as np

    from querycache.semantic.embedders import load_embedder

    model = load_embedder("minilm")
    out: dict[str, Any] = {}
    for corpus_name, pairs in (("equivalent", EQUIVALENT), ("near_miss", NEAR_MISS)):
        for text_kind in ("written", "canonical"):
            a_texts, b_texts = [], []
            for pair in pairs:
                if text_kind == "written":
                    a_texts.append(pair["a"])
                    b_texts.append(pair["b"])
                else:
                    try:
                        a_texts.append(canonicalize(pair["a"], "postgres", "format", None).form)
                        b_texts.append(canonicalize(pair["b"], "postgres", "format", None).form)
                    except Ineligible:
                        continue
            va = np.vstack([model.encode(a_texts[i:i + 32]) for i in range(0, len(a_texts), 32)])
            vb = np.vstack([model.encode(b_texts[i:i + 32]) for i in range(0, len(b_texts), 32)])
            cosines = (va * vb).sum(axis=1)
            out[f"{corpus_name}/{text_kind}"] = {
                "pairs": len(cosines), "median": round(float(np.median(cosines)), 4),
                "p10": round(float(np.percentile(cosines, 10)), 4),
                "passing": {str(t): round(float((cosines >= t).mean()), 3) for t in thresholds}}
            print(f"[study] {corpus_name}/{text_kind}: {out[f'{corpus_name}/{text_kind}']}", flush=True)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["### L3 on the verified corpora (PostgreSQL)", "",
             "| embedder | corpus | pairs | L1/L2 hits | L3 hits | L3 hit rate beyond L2 | misses | false hits "
             "| wrong answers |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in report["runs"]:
        s = run["statuses"]
        l2 = s.get("hit:L2", 0) + s.get("hit:L1", 0)
        l3 = s.get("hit:L3", 0)
        false_hits = l2 + l3 if run["corpus"] == "near_miss" else "-"
        rate = f"{hit_rates(run)['l3_beyond_l2']:.1%}" if run["corpus"] == "equivalent" else "-"
        lines.append(f"| {run['model']} | {run['corpus']} | {run['pairs']} | {l2} | {l3} | {rate} | "
                     f"{s.get('miss', 0)} | {false_hits} | {len(run['wrong_answers'])} |")
    study = report.get("study")
    if study:
        thresholds = list(next(iter(study.values()))["passing"])
        lines += ["", "### Similarity alone (MiniLM cosine of the two texts): share of pairs at or above", "",
                  "| pairs | texts | median | " + " | ".join(thresholds) + " |",
                  "|---|---|---:|" + "---:|" * len(thresholds)]
        for key, row in study.items():
            corpus, texts = key.split("/")
            lines.append(f"| {corpus} | {texts} | {row['median']} | "
                         + " | ".join(f"{row['passing'][t]:.1%}" for t in thresholds) + " |")
    kinds: dict[str, dict[str, int]] = {}
    for run in report["runs"]:
        if run["corpus"] == "equivalent" and run["model"] == report["runs"][0]["model"]:
            for kind, counts in run["by_kind"].items():
                kinds[kind] = counts
    if kinds:
        lines += ["", "### Equivalent corpus by rewrite kind", "", "| kind | L1/L2 | L3 | miss |",
                  "|---|---:|---:|---:|"]
        for kind, c in kinds.items():
            lines.append(f"| {kind} | {c.get('hit:L2', 0) + c.get('hit:L1', 0)} | {c.get('hit:L3', 0)} | "
                         f"{c.get('miss', 0)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("minilm", "ngram", "both"), default="both")
    parser.add_argument("--no-study", action="store_true")
    args = parser.parse_args()
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        load_schema(admin)
    report: dict[str, Any] = {"runs": []}
    models = ["ngram", "minilm"] if args.model == "both" else [args.model]
    for model in models:
        for corpus, pairs in (("equivalent", EQUIVALENT), ("near_miss", NEAR_MISS)):
            result = evaluate(model, pairs, PG_DSN)
            result["corpus"] = corpus
            print(f"[{model}/{corpus}] {result['statuses']} wrong={len(result['wrong_answers'])} "
                  f"({result['seconds']} s)", flush=True)
            report["runs"].append(result)
    if not args.no_study:
        report["study"] = similarity_study([0.9, 0.95, 0.97, 0.98, 0.99, 0.999])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "semantic_corpus.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (RESULTS / "semantic_corpus.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
