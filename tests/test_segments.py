"""SMS segment counts (R16): GSM-7 160/153, UCS-2 70/67, characters never split across parts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendcore import segments
from sendcore.segments import sms_segments

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"


def reference(body: str) -> int:
    """A plain restatement of the rules, one character at a time."""
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in body):
        widths = [2 if c in GSM_EXTENSION else 1 for c in body]
        single, per_part = 160, 153
    else:
        widths = [len(c.encode("utf-16-le")) // 2 for c in body]
        single, per_part = 70, 67
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for w in widths:
        if used + w > per_part:
            parts, used = parts + 1, 0
        used += w
    return parts


@pytest.fixture(autouse=True)
def cold_cache():
    segments._CACHE.clear()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", 1),
        ("Votre panier vous attend", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("é" * 160, 1),  # é is in GSM-7
        ("é" * 161, 2),
        ("€" * 80, 1),  # extension characters count two septets
        ("€" * 81, 2),
        ("^" * 80, 1),
        ("{" * 81, 2),
        ("a" * 159 + "]", 2),  # 161 septets
        ("ç" * 70, 1),  # ç is not GSM-7 (Ç is): UCS-2
        ("ç" * 71, 2),
        ("ç" * 134, 2),
        ("ç" * 135, 3),
        ("`" * 70, 1),  # the backtick is ASCII but not GSM-7
        ("`" * 71, 2),
        ("a" * 71, 1),
        ("😀" * 35, 1),  # two UTF-16 code units each
        ("😀" * 36, 2),
        ("Soldes -50% 🎉", 1),
        ("Soldes -50% 🎉 " + "x" * 60, 2),
    ],
)
def test_known_counts(body, expected):
    assert sms_segments(body) == expected


def test_an_escape_pair_is_never_split():
    # 306 septets would fit two parts of 153, but "{" would straddle the first boundary.
    assert sms_segments("a" * 152 + "{" + "a" * 152) == 3
    assert sms_segments("a" * 151 + "{" + "a" * 153) == 2


def test_a_surrogate_pair_is_never_split():
    # 134 code units would fit two parts of 67, but the emoji would straddle the boundary.
    assert sms_segments("a" * 66 + "😀" + "a" * 66) == 3
    assert sms_segments("a" * 65 + "😀" + "a" * 67) == 2


def test_one_non_gsm_character_turns_the_body_to_ucs2():
    body = "a" * 100
    assert sms_segments(body) == 1
    assert sms_segments(body + "ç") == 2


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(GSM_BASIC + GSM_EXTENSION) + ["`", "ç", "😀", "\x00", "中"]), max_size=400))
def test_counts_match_the_plain_rules(body):
    assert sms_segments(body) == reference(body)
    assert sms_segments(body) == reference(body)  # and again from the cache


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=400))
def test_ascii_fast_path_matches_the_plain_rules(body):
    assert sms_segments(body) == reference(body)


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(segments, "MAX_CACHE_KEYS", 10)
    for i in range(100):
        assert sms_segments(f"body {i}") == 1
        assert len(segments._CACHE) <= 10
