"""SMS segments as carriers bill them: GSM-7 160/153, UCS-2 70/67, nothing split."""

from __future__ import annotations

import pytest

from engine.channels.segments import count_segments, is_gsm7


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("Ünöñ? GSM: ÄÖÑÜäöñüàèé£¥§¿¡", "GSM-7", 27, 1),
        ("naïve", "UCS-2", 5, 1),  # ï is not in the GSM alphabet
        ("€" * 80, "GSM-7", 160, 1),  # the extension table takes two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("a" + "€" * 77, "GSM-7", 155, 1),
        ("a" * 152 + "€" + "b" * 152, "GSM-7", 306, 3),  # the € pair is not split: 152+153+1
        ("中" * 70, "UCS-2", 70, 1),
        ("中" * 71, "UCS-2", 71, 2),
        ("中" * 134, "UCS-2", 134, 2),
        ("中" * 135, "UCS-2", 135, 3),
        ("a" * 69 + "中", "UCS-2", 70, 1),  # one Chinese character makes it all UCS-2
        ("😀" * 35, "UCS-2", 70, 1),  # an emoji is a surrogate pair
        ("😀" * 36, "UCS-2", 72, 2),
        ("a" * 66 + "😀" + "b" * 66, "UCS-2", 134, 3),  # the pair is not split: 66+67+1
    ],
)
def test_counts_like_carriers(text: str, encoding: str, units: int, segments: int) -> None:
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_mainland_billing_counts_every_character_as_one_of_70() -> None:
    assert count_segments("a" * 70, ucs2=True).segments == 1
    assert count_segments("a" * 71, ucs2=True).segments == 2
    assert count_segments("a" * 71).segments == 1  # the same text as GSM-7


def test_gsm7_alphabet() -> None:
    assert is_gsm7("Hello, world! @ £ $ ¥ {} [] ~ \\ | ^ €")
    assert not is_gsm7("ç")  # only the capital Ç is in the basic table
    assert not is_gsm7("你好")
