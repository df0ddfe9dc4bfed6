"""Pronunciation lexicon: whole words (and word sequences) respelled before chunking, one compiled regex."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# A lexicon is a hand-made list; a file past these is a mistake (a wrong path), refused unread.
MAX_LEXICON_BYTES = 16 * 2**20
MAX_WORD_CHARS = 200  # a word or word sequence; also bounds the regex's nesting (one group per character)
MAX_RESPELLING_CHARS = 500
COMMENT = "#"
# The optional third column, as a row's language column takes it ("en", "pt-BR").
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_SPACE = re.compile(r"\s+")


def _key(words: str) -> str:
    """Lookup key of a word or word sequence: lower case, whitespace runs as one space."""
    return _SPACE.sub(" ", words.strip()).lower()


def _base(language: str) -> str:
    return re.split(r"[-_]", language.strip().lower())[0]


@dataclass
class Lexicon:
    """word key -> respelling, for every language (`common`) and per base language (`by_language`)."""

    common: dict[str, str] = field(default_factory=dict)
    by_language: dict[str, dict[str, str]] = field(default_factory=dict)
    _compiled: dict[str, tuple[re.Pattern | None, dict[str, str]]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.common) + sum(len(v) for v in self.by_language.values())

    def merged(self, other: Lexicon) -> Lexicon:
        """This lexicon with `other`'s entries added; `other` wins where both respell a word."""
        langs = {lang: {**self.by_language.get(lang, {}), **words} for lang, words in other.by_language.items()}
        return Lexicon({**self.common, **other.common}, {**self.by_language, **langs})

    def apply(self, text: str, language: str = "en") -> str:
        """`text` with every listed whole word respelled, longest entry first, case ignored."""
        pattern, table = self._for(_base(language))
        if pattern is None:
            return text
        # A match whose key misses the table (a case mapping that changes length): left as written.
        return pattern.sub(lambda m: table.get(_key(m[0]), m[0]), text)

    def _for(self, lang: str) -> tuple[re.Pattern | None, dict[str, str]]:
        """The compiled regex and table for one base language, built on first use (once per actor)."""
        if lang not in self._compiled:
            table = {**self.common, **self.by_language.get(lang, {})}
            self._compiled[lang] = (_compile(list(table)), table) if table else (None, table)
        return self._compiled[lang]


def _compile(keys: list[str]) -> re.Pattern:
    """One regex for all keys: a trie of their characters, so a position costs one walk, not one try per key.

    Inside the trie a longer continuation is tried before a key may end there, and the match must end at a
    word boundary, so the longest listed word sequence wins ("New York City" over "New York").
    """
    trie: dict = {}
    for key in keys:
        node = trie
        for ch in key:
            node = node.setdefault(ch, {})
        node[""] = {}  # a key ends here
    return re.compile(rf"(?<!\w)(?:{_trie_pattern(trie)})(?!\w)", re.IGNORECASE)


def _trie_pattern(node: dict) -> str:
    alternatives = [(r"\s+" if ch == " " else re.escape(ch)) + _trie_pattern(child) for ch, child in node.items() if ch]
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    return f"(?:{body})?" if "" in node else body


def parse_lexicon(text: str, source: str) -> tuple[Lexicon, list[str]]:
    """(lexicon of the good lines, one problem per bad line as "SOURCE:LINE: what is wrong")."""
    lexicon, problems = Lexicon(), []
    seen: dict[tuple[str | None, str], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry, problem = _parse_line(line)
        if problem:
            problems.append(f"{source}:{number}: {problem}")
            continue
        if entry is None:
            continue
        word, respelling, lang = entry
        if (lang, word) in seen:
            problems.append(f"{source}:{number}: {word!r} is already respelled on line {seen[lang, word]}")
            continue
        seen[lang, word] = number
        target = lexicon.common if lang is None else lexicon.by_language.setdefault(lang, {})
        target[word] = respelling
    return lexicon, problems


def _parse_line(line: str) -> tuple[tuple[str, str, str | None] | None, str | None]:
    """((key, respelling, base language or None) or None for a blank/comment line, problem or None)."""
    if not line.strip() or line.lstrip().startswith(COMMENT):
        return None, None
    if "\t" not in line:
        return None, "no tab between word and respelling"
    columns = [c.strip() for c in line.split("\t")]
    if len(columns) > 3:
        return None, f"{len(columns)} columns; use word<TAB>respelling[<TAB>language]"
    word, respelling = _key(columns[0]), _SPACE.sub(" ", columns[1])
    lang = columns[2] if len(columns) == 3 and columns[2] else None
    if not word:
        return None, "the word (first column) is empty"
    if not respelling:
        return None, f"no respelling for {word!r} (second column is empty)"
    if len(word) > MAX_WORD_CHARS or len(respelling) > MAX_RESPELLING_CHARS:
        return None, f"entry longer than {MAX_WORD_CHARS} (word) or {MAX_RESPELLING_CHARS} (respelling) characters"
    if lang is not None and not _LANGUAGE.match(lang):
        return None, f"language {lang[:40]!r} is not a language code like 'en' or 'pt-BR'"
    return (word, respelling, None if lang is None else _base(lang)), None


def _read(path: str | Path) -> str:
    """The file's text; ValueError/FileNotFoundError naming the path and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"lexicon {str(path)!r} is not a file; give a TSV of word<TAB>respelling lines")
    if p.stat().st_size > MAX_LEXICON_BYTES:
        raise ValueError(f"lexicon {str(path)!r} is {p.stat().st_size} bytes (limit {MAX_LEXICON_BYTES}); is it "
                         "the right file?")  # fmt: skip
    try:
        return p.read_text(encoding="utf-8-sig")  # -sig: a BOM written by a spreadsheet is not part of word 1
    except UnicodeDecodeError as exc:
        raise ValueError(f"lexicon {str(path)!r} is not UTF-8 (bad byte at offset {exc.start}); save it as UTF-8"
                         ) from None  # fmt: skip


def check_lexicon(path: str | Path) -> list[str]:
    """Every problem of a lexicon file, one line each ("lexicon.tsv:12: no tab between word and respelling")."""
    try:
        text = _read(path)
    except (OSError, ValueError) as exc:
        return [str(exc)]
    return parse_lexicon(text, str(path))[1]


def load_lexicon(path: str | Path) -> Lexicon:
    """The lexicon in `path`; ValueError with its first problem (and how many more) when a line is bad."""
    lexicon, problems = parse_lexicon(_read(path), str(path))
    if problems:
        more = f" (and {len(problems) - 1} more; `barkpipe validate` lists them)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)
    return lexicon
