"""Split a document into overlapping chunks for embedding and search.

A chunk holds whole paragraphs, or whole sentences of a long paragraph, up to `size`
characters (800 by default: about 200-300 tokens of Korean or English, well inside
multilingual-e5-small's 512-token window). Consecutive chunks of one section share about
`overlap` characters (the last sentences of the previous chunk), so a fact that straddles
a boundary is whole in at least one chunk. Markdown headings start a new chunk and name
its section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SIZE = 800
DEFAULT_OVERLAP = 120

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
# Sentence ends: Latin punctuation, the Korean declarative ending "다." and CJK stops.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Chunk:
    text: str
    section: str | None


def _sections(text: str) -> list[tuple[str | None, list[str]]]:
    """(heading, paragraphs) in document order."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            out[-1][1].append(" ".join(s.strip() for s in para))
            para.clear()

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            out.append((heading.group(1).strip(), []))
        elif line.strip():
            para.append(line)
        else:
            flush()
    flush()
    return [(h, ps) for h, ps in out if ps]


def _pieces(paragraph: str, size: int) -> list[str]:
    """A paragraph as pieces of at most `size` characters: whole sentences where possible."""
    if len(paragraph) <= size:
        return [paragraph]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > size:  # one very long sentence: cut at a space if any
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


def chunk_text(text: str, size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    """The chunks of `text`, in order."""
    if size < 50 or not 0 <= overlap < size // 2:
        raise ValueError("chunking: size must be >= 50 and 0 <= overlap < size / 2")
    chunks: list[Chunk] = []
    for section, paragraphs in _sections(text):
        pieces = [p for para in paragraphs for p in _pieces(para, size)]
        current: list[str] = []
        length = 0
        for piece in pieces:
            if current and length + 1 + len(piece) > size:
                chunks.append(Chunk(" ".join(current), section))
                # Carry the tail of this chunk into the next one.
                tail: list[str] = []
                carried = 0
                for prev in reversed(current):
                    if carried + len(prev) > overlap:
                        break
                    tail.insert(0, prev)
                    carried += len(prev) + 1
                current, length = tail, max(carried - 1, 0)
            current.append(piece)
            length += len(piece) + (1 if length else 0)
        if current:
            chunks.append(Chunk(" ".join(current), section))
    return chunks
