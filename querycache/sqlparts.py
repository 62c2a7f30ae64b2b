"""Small helpers over SQL text and sqlglot trees shared by L3's canonical form and the row-level
analysis: placeholders found outside quotes and comments, and flattened AND/OR chains."""

from __future__ import annotations

from sqlglot import exp


def split_outside_quotes(text: str, token: str) -> list[str]:
    """``text`` split at ``token`` where it is not inside quotes or a comment (the scanner has
    already removed hint comments and turned MySQL's ``%s`` into ``?``)."""
    pieces: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == "\\" and c != "`":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if text.startswith(token, i):
            if token == "?" and i + 1 < n and text[i + 1] in "|&-":
                i += 2  # PostgreSQL operators ?| ?& ?-: not placeholders
                continue
            pieces.append(text[start:i])
            i += len(token)
            start = i
            continue
        i += 1
    pieces.append(text[start:])
    return pieces


def flatten(node: exp.Expression, kind: type[exp.Expression]) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    stack = [node]
    while stack:
        current = stack.pop()
        while isinstance(current, exp.Paren):
            current = current.this
        if isinstance(current, kind):
            stack.append(current.expression)
            stack.append(current.this)
        else:
            out.append(current)
    return out
