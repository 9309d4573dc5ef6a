from programs.chunking import split_note


def test_short_note_is_one_part():
    assert split_note("short note", 100) == ["short note"]


def test_long_note_splits_at_boundaries_and_keeps_all_text():
    paragraphs = [f"Paragraph {i}. " + "word " * 30 for i in range(10)]
    note = "\n\n".join(paragraphs)
    parts = split_note(note, 400)
    assert len(parts) > 1
    assert all(len(part) <= 400 for part in parts)
    assert "".join(parts) == note
    assert all(part.lstrip().startswith("Paragraph") for part in parts)


def test_one_huge_word_is_cut():
    parts = split_note("x" * 1000, 300)
    assert all(len(part) <= 300 for part in parts) and "".join(parts) == "x" * 1000
