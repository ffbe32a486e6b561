"""The classification route's minimal answer: a rule, no model (the article's "regex")."""

from __future__ import annotations

import re

from hedgerow import ir

__all__ = ["classify_ticket"]

_RULES = (
    ("billing", re.compile(r"\b(refund|invoice|charge[ds]?|payment|billing)\b", re.I)),
    ("outage", re.compile(r"\b(down|outage|error|5\d\d|not working)\b", re.I)),
    ("account", re.compile(r"\b(password|login|sign[ -]?in|account)\b", re.I)),
)


def classify_ticket(request: ir.ChatRequest) -> str:
    """The label of the last user message by keyword, ``general`` when none matches."""
    text = ""
    for message in reversed(request.messages):
        if message.role == "user":
            text = " ".join(p.text for p in message.content if isinstance(p, ir.TextPart))
            break
    for label, pattern in _RULES:
        if pattern.search(text):
            return label
    return "general"
