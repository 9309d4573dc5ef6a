"""What the review page shows of a note: one card per code (colour, description, decision,
trace lines) and the note's HTML with every evidence span marked. No HTTP here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from programs.result import StageTrace
from review.codes import CodeBook
from review.highlight import PALETTE_SIZE, Mark, segments
from review.model import PENDING, REJECTED, REPLACED, NoteReview


@dataclass(frozen=True)
class Card:
    """A suggested code (`kind` 'suggested') or a code the coder added (`kind` 'added')."""

    key: str
    kind: str
    index: int
    colour: int
    code: str
    description: str
    state: str
    token: str = PENDING
    rationale: str = ""
    reason: str = ""
    replacement: str = ""
    replacement_description: str = ""
    spans: int = 0
    unplaced: tuple[str, ...] = ()
    trace: tuple[str, ...] = ()
    words: str = ""
    remove_key: str = ""

    @property
    def label(self) -> str:
        """Code and description as a highlighted span's tooltip names them."""
        if self.state == REPLACED:
            return f"{self.replacement} {self.replacement_description} (replaces {self.code})"
        suffix = " (rejected)" if self.state == REJECTED else ""
        return f"{self.code} {self.description}{suffix}"


def cards(note: NoteReview, codes: CodeBook, trace: Sequence[StageTrace] = ()) -> list[Card]:
    shown: list[Card] = []
    for i, item in enumerate(note.suggestions):
        decision = note.decisions.get(item.code)
        state = decision.verdict if decision else PENDING
        shown.append(Card(
            key=f"s{i}", kind="suggested", index=i, colour=i % PALETTE_SIZE, code=item.code,
            description=item.description or codes.describe(item.code), state=state, token=note.token(item.code),
            rationale=item.rationale, reason=decision.reason if decision else "",
            replacement=decision.replacement if decision else "",
            replacement_description=codes.describe(decision.replacement) if decision and decision.replacement else "",
            spans=len(item.spans), unplaced=item.unplaced, trace=tuple(code_trace(trace, item.code)),
        ))
    for j, item in enumerate(note.added):
        shown.append(Card(
            key=f"a{j}", kind="added", index=j, colour=(len(note.suggestions) + j) % PALETTE_SIZE, code=item.code,
            description=codes.describe(item.code), state="added", spans=1,
            words=note.text[item.span.start:item.span.end], remove_key=item.key,
        ))
    return shown


def code_trace(trace: Sequence[StageTrace], code: str) -> list[str]:
    """The trace lines that name `code` (not a longer code it starts): what each stage proposed,
    kept, dropped (and why), logged."""
    named = re.compile(rf"(?<![0-9A-Za-z.]){re.escape(code)}(?![0-9A-Za-z])").search
    lines = []
    for stage in trace:
        lines += [f"{stage.stage}: proposed {item}" for item in stage.proposed if named(item)]
        lines += [f"{stage.stage}: kept {item}" for item in stage.kept if named(item)]
        lines += [f"{stage.stage}: dropped {d.item} ({d.reason})" for d in stage.dropped if named(d.item) or named(d.reason)]
        lines += [f"{stage.stage}: {line}" for line in stage.log if named(line)]
        if stage.codes is not None and code in stage.codes:
            lines.append(f"{stage.stage}: passed on")
    return lines


def stage_lines(stage: StageTrace) -> list[str]:
    """A whole stage in lines, for the note's folded trace."""
    lines = [f"proposed: {item}" for item in stage.proposed]
    lines += [f"kept: {item}" for item in stage.kept]
    lines += [f"dropped: {d.item} ({d.reason})" for d in stage.dropped]
    lines += stage.log
    if stage.codes is not None:
        lines.append(f"passed on: {', '.join(stage.codes) or 'nothing'}")
    return lines


def note_html(note: NoteReview, shown: Sequence[Card]) -> Markup:
    """The note as escaped HTML: one element per segment with its offset in the note
    (`data-o`, in characters) so a selection maps back to offsets; evidence segments carry the
    keys of their cards, a colour and a tooltip; headings are bold. Carriage returns are written
    as character references, which HTML parsing does not fold into line feeds."""
    by_key = {card.key: card for card in shown}
    marks = [Mark(f"s{i}", span.start, span.end) for i, item in enumerate(note.suggestions) for span in item.spans]
    marks += [Mark(f"a{j}", item.span.start, item.span.end) for j, item in enumerate(note.added)]
    parts = []
    for piece in segments(note.text, marks):
        text = str(escape(piece.text)).replace("\r", "&#13;")
        tag = "b" if piece.heading else "span"
        classes = ["heading"] if piece.heading else []
        attributes = f' data-o="{piece.start}"'
        if piece.keys:
            first = by_key[piece.keys[0]]
            classes += ["ev", f"c{first.colour}", first.state] + (["multi"] if len(piece.keys) > 1 else [])
            title = "\n".join(by_key[key].label for key in piece.keys)
            attributes += f' data-keys="{" ".join(piece.keys)}" title="{escape(title)}"'
        if classes:
            attributes += f' class="{" ".join(classes)}"'
        parts.append(f"<{tag}{attributes}>{text}</{tag}>")
    return Markup("".join(parts))
