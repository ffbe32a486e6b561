"""A rule-based minimal answer for the tests: classification with no model."""

from __future__ import annotations

from hedgerow import ir


def classify_ticket(request: ir.ChatRequest) -> str:
    """``billing`` for money words, else ``general``."""
    text = " ".join(
        part.text
        for message in request.messages
        for part in message.content
        if isinstance(part, ir.TextPart)
    ).lower()
    return "billing" if any(w in text for w in ("refund", "invoice", "charge")) else "general"
