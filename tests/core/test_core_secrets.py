"""``SecretMask``: the one rule known secret values are masked by, for the request log's
native lines and the ``Redactor`` (logs, events, alerts) alike."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hedgerow._core import RequestLines, SecretMask
from hedgerow.observe.redact import REDACTED, Redactor


def reference(text: str, secrets: list[str]) -> str:
    """The rule, written plainly: values of 4 bytes and more; left to right, at each place
    the longest value that starts there is replaced."""
    kept = sorted({s for s in secrets if len(s.encode()) >= 4}, key=len, reverse=True)
    out, at = [], 0
    while at < len(text):
        found = next((s for s in kept if text.startswith(s, at)), None)
        if found is None:
            out.append(text[at])
            at += 1
        else:
            out.append(REDACTED)
            at += len(found)
    return "".join(out)


def test_values_are_kept_longest_first_without_short_ones_or_repeats() -> None:
    mask = SecretMask(["abc", "sk-live-1234", "tok1", "sk-live-1234", "é€"])
    # "é€" is 2 characters but 5 bytes: long enough to mean something, so kept.
    assert mask.values == ["sk-live-1234", "é€", "tok1"]


def test_a_secret_inside_another_is_masked_whole() -> None:
    mask = SecretMask(["1234", "sk-live-1234"])
    assert mask.mask("key=sk-live-1234; pin 1234") == f"key={REDACTED}; pin {REDACTED}"


def test_text_without_a_secret_comes_back_as_the_same_object() -> None:
    mask = SecretMask(["sk-live-1234"])
    text = "nothing to hide here " * 20
    assert mask.mask(text) is text
    lone = "a lone surrogate \ud800 and no secret"
    assert mask.mask(lone) is lone


_ALPHABET = st.sampled_from(["a", "b", "ab", "é", "€", "-", " ", "key"])
_TEXTS = st.lists(_ALPHABET, max_size=30).map("".join)
_SECRETS = st.lists(st.lists(_ALPHABET, min_size=1, max_size=4).map("".join), max_size=5)


@given(_TEXTS, _SECRETS)
def test_masking_follows_the_rule(text: str, secrets: list[str]) -> None:
    assert SecretMask(secrets).mask(text) == reference(text, secrets)


@given(_TEXTS, _SECRETS)
def test_the_redactor_and_the_request_log_mask_alike(text: str, secrets: list[str]) -> None:
    """What the Redactor leaves of a text is what the request log writes of it (the
    credential shapes the Redactor also masks are kept out of these texts)."""
    lines = RequestLines(secrets)
    lines.add(0.0, text, None, {}, None)
    written = lines.take().decode()
    redactor = Redactor(secrets)
    assert f'"route":"{redactor.text(text)}"' in written
