"""The decisions in words (scanner/decide/text.py): short lines, status first."""

from scanner.decide.text import WIDTH, wrap


def test_wrap_keeps_lines_under_100_columns_and_numbers_whole():
    line = "verdict: no reference: " + " ".join(f"class {k} flagged 0.95 of {k}/11" for k in range(20))
    parts = wrap(line)
    assert len(parts) > 1 and all(len(p) <= WIDTH < 100 for p in parts)
    assert all(p.startswith("  ") for p in parts[1:]) and parts[0].startswith("verdict: no reference: ")
    assert " ".join(p.strip() for p in parts) == line  # nothing cut inside a word or number
    assert wrap("short") == ["short"]
