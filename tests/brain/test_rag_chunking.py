"""Chunking: sections, size bound, overlap between consecutive chunks."""

from __future__ import annotations

import itertools

import pytest

from tradestore.brain.chunking import chunk_text


def test_headings_start_sections_and_name_them() -> None:
    text = "# 개요\n\n삼성전자 실적 발표.\n\n## Risks\n\nFX exposure.\nSecond line.\n"
    chunks = chunk_text(text, size=200, overlap=20)
    assert [(c.section, c.text) for c in chunks] == [
        ("개요", "삼성전자 실적 발표."),
        ("Risks", "FX exposure. Second line."),
    ]


def test_chunks_are_bounded_and_overlap() -> None:
    sentences = [f"Sentence number {i} says something about 반도체 {i}." for i in range(60)]
    chunks = chunk_text(" ".join(sentences), size=300, overlap=80)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        first_of_b = b.text.split(". ")[0] + "."
        assert first_of_b in a.text  # b starts with the tail of a
    # Every sentence is in some chunk.
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_a_long_sentence_is_cut() -> None:
    chunks = chunk_text("x" * 1000, size=300, overlap=0)
    assert [len(c.text) for c in chunks] == [300, 300, 300, 100]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", size=100, overlap=60)
