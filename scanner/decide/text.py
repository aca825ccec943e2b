"""The decisions in words: the lines the command line prints for a summary, a verdict and a gate.

One place for the wording, so that ``str()`` of a :class:`~scanner.decide.verdict.Summary`,
``Verdict`` or ``Gate`` in a notebook is the CLI's text (:mod:`scanner.report` paints these lines
and adds the model and settings above them). Each function returns ``(line, colour)`` pairs
(colour None, "red", "yellow" or "green"); lines are at most :data:`WIDTH` columns, broken between
words, continuation lines indented by two spaces. Duck-typed on the decision objects, so that
:mod:`scanner.decide.verdict` can use it without a cycle.
"""

from __future__ import annotations

import textwrap

WIDTH = 99  # summary lines stay under 100 columns: a CI log, an 80-100 column terminal

Line = tuple[str, "str | None"]


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """``line`` as lines of at most ``width`` columns, broken between words (never inside a
    number or a path), continuation lines indented by two spaces."""
    if len(line) <= width:
        return [line]
    return textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def verdict_lines(verdict) -> list[Line]:
    """``verdict: <status>: <detail>``: the status (a suspected target, no suspect, no reference,
    cannot judge, no suspect named) first, then why."""
    v = verdict
    if v.suspects:
        return [("verdict: " + s.text, "red") for s in v.suspects]
    note = v.note or ""
    if v.status == "cannot judge":
        return [("verdict: " + (note if note.startswith("cannot judge") else "cannot judge: " + note), "yellow")]
    if v.status == "no reference":
        detail = note.split(": ", 1)[1] if note.startswith("no benign reference: ") else note
        return [("verdict: no reference: " + (detail or "no benign reference"), "yellow")]
    if v.withheld:
        return [("verdict: no suspect named: " + v.withheld, "yellow")]
    return [("verdict: no suspect: no predicted class is flagged significantly more than expected", "green")]


def gate_line(gate) -> Line:
    return ("gate: PASSED", "green") if gate.passed else ("gate: FAILED (" + "; ".join(gate.reasons) + ")", "red")


def summary_lines(summary, gate=None) -> list[Line]:
    """Counts, the flagged count per predicted class (the classes with a flagged input, the rest
    summed up), the expected benign rate, the verdict and the gate."""
    lines: list[Line] = [(
        f"inputs found {summary.inputs_found}, scored {summary.scored}, failed {summary.failed}, "
        f"flagged {summary.flagged} ({summary.flagged_rate:.1%})"
        + (f", undecidable {summary.undecidable} (never flagged, not in the verdict)" if summary.undecidable else ""),
        None)]
    if summary.per_class:
        hit = [c for c in summary.per_class if c.flagged]
        rest = [c for c in summary.per_class if not c.flagged]
        parts = [f"{c.label}{' ' + c.class_name if c.class_name else ''}: {c.flagged}/{c.inputs}" for c in hit]
        if rest:
            parts.append(f"{len(rest)} other class{'es' if len(rest) > 1 else ''}: 0/{sum(c.inputs for c in rest)}")
        lines.append(("flagged per predicted class: " + ", ".join(parts), None))
    v = summary.verdict
    lines.append((f"expected benign flag rate {v.expected_fpr:.4g} ({v.expected_fpr_source})", None))
    lines.extend(verdict_lines(v))
    if gate is not None:
        lines.append(gate_line(gate))
    if summary.incomplete:
        lines.append((f"INCOMPLETE: {summary.incomplete}; the inputs not reached are listed as failed", None))
    return lines


def text(lines: list[Line]) -> str:
    """The lines, wrapped, without colour: what ``str()`` of a decision object gives."""
    return "\n".join(part for line, _ in lines for part in wrap(line))
