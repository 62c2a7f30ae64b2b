"""``explain``: how a connection would answer a statement right now, without running it.

It asks the read path's own ``bypass_reason`` and plans (``querycache.read``), so that it cannot
report a tier ``execute`` would not use (docs/architecture.md, "Data flow of one execute").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from querycache.analysis import Analysis, StatementKind
from querycache.backends.base import MISS
from querycache.errors import BackendUnavailable
from querycache.keys import l1_params
from querycache.maintain.reads import maintainability
from querycache.plan import ReadPlan, l3_scope, pinned_plan, store_key
from querycache.read import bypass_reason, l1_fresh
from querycache.status import BypassReason

if TYPE_CHECKING:
    from querycache.semantic.tier import SemanticTier
    from querycache.session import Session


def explain(session: Session, sql: str, params: Any = None) -> dict[str, Any]:
    """How this connection would answer ``sql`` right now, without running it: the analysis,
    the dependencies (catalog included), the keys, and the tier (``l1``, ``l2``, or ``database``
    with the reason). The store lookup creates missing table versions, nothing else."""
    analysis = session.analyzer(sql)
    out = analysis.to_dict()
    out["tier"] = "database"
    if analysis.reason is not None:
        out["why"] = f"bypass:{analysis.reason.value}"
        return out
    if analysis.kind is not StatementKind.READ or analysis.changes_scope:
        out["why"] = "bypass:write" if analysis.is_write else "bypass:session"
        return out
    context = session.context
    in_tx = session.adapter.in_transaction(session.raw)
    raw_cursor = session.raw.cursor()
    try:
        reason, plan = bypass_reason(session, analysis, raw_cursor, params, in_tx)
        catalog, _ = session.catalog()
        secured = catalog.row_security_of(catalog.expand_reads(analysis.tables_read))
        if secured:
            out["row_security"] = {r.table: r.describe() for r in secured}
        if plan is not None and plan.row_pins is not None:
            plan = pinned_plan(session, plan, params)
        if plan is not None:
            out["version_keys"] = list(plan.version_keys)
            out["ttl_s"] = plan.ttl_s
            out["swr_s"] = plan.swr_s
            out["max_stale_s"] = plan.max_stale_s
        if context.maintain is not None:
            out["maintained"] = maintainability(session, sql, params)
        if reason is not None or plan is None:
            out["why"] = f"bypass:{(reason or BypassReason.UNKNOWN).value}"
            return out
        key = store_key(session, raw_cursor, analysis, params, plan)
        token = session.adapter.shape_token(raw_cursor)
        shape = session.adapter.cursor_shape(raw_cursor)
    finally:
        raw_cursor.close()
    out["keys"] = {"l2": key, "scope": plan.scope_key}
    if session.l1 is not None and analysis.hints.tier != "l2":
        entry = session.l1.get((session.scope_id, context.tenant.get(), token, sql, l1_params(params)))
        if entry is not None and l1_fresh(session, entry, in_tx):
            out["tier"] = "l1"
            return out
    try:
        lookup = context.backend.lookup(key, plan.version_keys, peek=True)
    except BackendUnavailable as exc:
        out["why"] = f"bypass:store_unavailable ({exc})"
        return out
    if lookup.value is not MISS:
        out["tier"] = "l2"
        return out
    out["why"] = "pending write" if lookup.pending else "miss: not cached (or no longer fresh)"
    l3 = context.l3
    if l3 is not None and not lookup.pending and (analysis.hints.semantic or context.config.l3.all_reads):
        semantic = _explain_l3(session, l3, analysis, sql, params, plan, shape)
        out["l3"] = semantic
        if semantic.get("match"):
            out["tier"] = "l3"
            out.pop("why")
    return out


def _explain_l3(session: Session, l3: SemanticTier, analysis: Analysis, sql: str, params: Any, plan: ReadPlan,
                shape: str) -> dict[str, Any]:
    """The nearest L3 entries of the statement's guard bucket and whether one would answer."""
    from querycache.semantic.canonical import Ineligible, canonicalize

    try:
        canonical = canonicalize(sql, session.analyzer.dialect, session.analyzer.paramstyle, params)
    except Ineligible as exc:
        return {"eligible": False, "reason": exc.reason}
    context = session.context
    scope = l3_scope(session, plan, shape)
    threshold = analysis.hints.semantic_threshold or context.config.l3.threshold
    candidates = l3.candidates(scope, plan.version_keys, canonical)
    match = None
    for candidate in candidates:
        if candidate["same_form"] and candidate["similarity"] >= threshold:
            try:
                found = context.backend.lookup(candidate["l2_key"], plan.version_keys, peek=True)
            except BackendUnavailable:
                break
            candidate["fresh"] = found.value is not MISS
            if candidate["fresh"]:
                match = candidate
                break
    return {"eligible": True, "threshold": threshold, "candidates": candidates, "match": match}
