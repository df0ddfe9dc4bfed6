"""The pronunciation lexicon: whole words, case ignored, longest first, per language; its file checks."""

from __future__ import annotations

import random
import re
import string

import pytest

from pipeline.text.chunks import split_text
from pipeline.text.lexicon import Lexicon, check_lexicon, load_lexicon, parse_lexicon

LINES = """# names in the books
Hermione\ther-MY-oh-nee
New York\tnoo YORK
New York City\tthe big apple

Nguyen\twin\ten
Nguyen\tnou-YEN\tde
"""


def lexicon() -> Lexicon:
    lex, problems = parse_lexicon(LINES, "lexicon.tsv")
    assert problems == []
    return lex


def test_whole_words_any_case_but_not_inside_longer_words():
    lex = lexicon()
    text = "Hermione, HERMIONE and hermione's cat; not Hermiones nor xHermione."
    assert lex.apply(text) == "her-MY-oh-nee, her-MY-oh-nee and her-MY-oh-nee's cat; not Hermiones nor xHermione."


def test_the_longest_word_sequence_wins_and_spaces_may_vary():
    assert lexicon().apply("From New  York City to New York.") == "From the big apple to noo YORK."


def test_an_entry_with_a_language_applies_to_rows_of_that_language_only():
    lex = lexicon()
    assert lex.apply("Nguyen", "en") == "win"
    assert lex.apply("Nguyen", "de-AT") == "nou-YEN"
    assert lex.apply("Nguyen", "fr") == "Nguyen"  # neither the en entry nor the de one


def test_it_agrees_with_a_word_by_word_lookup_on_random_text():
    rng = random.Random(7)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(3000)})
    table = {w: w.upper() + "x" for w in words[::2]}  # half the words are listed
    lex, problems = parse_lexicon("\n".join(f"{w}\t{r}" for w, r in table.items()), "big.tsv")
    assert problems == []
    text = " ".join(rng.choice(words).capitalize() if rng.random() < 0.2 else rng.choice(words) for _ in range(20000))
    expected = re.sub(r"\w+", lambda m: table.get(m[0].lower(), m[0]), text)  # the reference: one word at a time
    assert lex.apply(text) == expected != text


def test_a_row_lexicon_wins_over_the_config_one():
    own, _ = parse_lexicon("hermione\tHER-mee-own\nRon\tRONN", "lexicon column")
    merged = lexicon().merged(own)
    assert merged.apply("Hermione and Ron in New York") == "HER-mee-own and RONN in noo YORK"


def test_it_is_applied_after_normalisation_and_before_chunking():
    lex, _ = parse_lexicon("Doctor Who\tDOK-ter hoo\nforty-two\tthe answer", "l.tsv")
    chunks = split_text("Dr. Who said 42.", lexicon=lex)
    assert [c.text for c in chunks] == ["DOK-ter hoo said the answer."]


def test_check_lexicon_names_each_bad_line(tmp_path):
    path = tmp_path / "lexicon.tsv"
    path.write_text("# ok\nfine\tFINE\n\nno tab here\n\tempty word\nword\t\nHermione\ta\nhermione\tb\nx\ty\tz\tw\n"
                    "bad\tlang\tEnglish!\n", encoding="utf-8")  # fmt: skip
    assert check_lexicon(path) == [
        f"{path}:4: no tab between word and respelling",
        f"{path}:5: the word (first column) is empty",
        f"{path}:6: no respelling for 'word' (second column is empty)",
        f"{path}:8: 'hermione' is already respelled on line 7",
        f"{path}:9: 4 columns; use word<TAB>respelling[<TAB>language]",
        f"{path}:10: language 'English!' is not a language code like 'en' or 'pt-BR'",
    ]
    with pytest.raises(ValueError, match=r"lexicon.tsv:4: no tab .* \(and 5 more; `barkpipe validate` lists them\)"):
        load_lexicon(path)


def test_missing_or_binary_files_are_one_line(tmp_path):
    assert check_lexicon(tmp_path / "none.tsv") == [
        f"lexicon '{tmp_path / 'none.tsv'}' is not a file; give a TSV of word<TAB>respelling lines"
    ]
    (tmp_path / "bin.tsv").write_bytes(b"ok\tfine\n\xff\xfe\n")
    [problem] = check_lexicon(tmp_path / "bin.tsv")
    assert "is not UTF-8 (bad byte at offset 8)" in problem
    good = tmp_path / "good.tsv"
    good.write_text("\ufeffHermione\ther-MY-oh-nee\n", encoding="utf-8")  # a spreadsheet's BOM
    assert check_lexicon(good) == [] and load_lexicon(good).apply("Hermione") == "her-MY-oh-nee"
