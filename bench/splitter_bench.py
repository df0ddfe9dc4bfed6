"""Sentence splitters side by side: sentencex (what barkpipe uses) against pysbd (what it used) and a plain regex.

On the texts the segmenter sees (normalised, paragraph by paragraph) in 14 languages, it measures
each splitter's agreement with pysbd's boundaries, the share of texts whose chunk plan stays the
same, the hard cases (abbreviations, decimals, ellipses, quotes) each gets right, and sentences per
second, all in one run:

    python bench/splitter_bench.py                      # table, JSON in bench/out/splitter.json
    python bench/splitter_bench.py --rows 20000 --json /tmp/splitter.json

pysbd is not a barkpipe dependency any more: `pip install pysbd` to run this.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from bench.scale import manifest_text  # noqa: E402  (after the path above)
from pipeline.text import segment  # noqa: E402
from pipeline.text.normalize import PARAGRAPH_BREAK, normalize_text  # noqa: E402

PYSBD_WINDOW_CHARS = 4000  # as barkpipe read pysbd: its cost is quadratic in its input
SIMPLE_BOUNDARY = re.compile(r"[.!?…]+[\"'»”)\]]*\s+|[。！？]+[」』）\"']*\s*")  # barkpipe's old fallback
SPEED_REPEATS = 3  # the fastest of this many passes is reported

# Paragraphs per language, written for this bench: abbreviations the normaliser leaves (U.S., No., p.m.),
# decimals, ellipses, quotes and brackets, in the scripts Bark speaks.
CORPUS = {
    "en": [
        "The U.S. team arrived at 3 p.m. on Friday. Nobody expected them. They had flown in from Boston.",
        'She whispered, "Are you coming?" He did not answer. The clock struck nine... and then ten.',
        "Fig. 3 shows the results (see also No. 7). The values rose by 2.5 percent. Was it enough?",
        "He said: 'Wait!' Then he ran. Version 1.2.3 was released in Jan. 2020, i.e. last year.",
    ],
    "de": [
        "Das Treffen beginnt um 9 Uhr. Bitte seien Sie pünktlich! Wir sehen uns, d. h. hoffentlich.",
        "Er kam am 3. Mai nach Berlin. Dort blieb er drei Wochen. „Nie wieder“, sagte er danach.",
    ],
    "fr": [
        "Bonjour ! Comment allez-vous ? Je vais bien, merci. M. Dupont est arrivé hier soir.",
        "« Vraiment ? » demanda-t-elle. Il hocha la tête… puis il partit sans un mot.",
    ],
    "es": [
        "¿Dónde está la estación? Está a dos calles. ¡Gracias! El Sr. García llegó a las 5.",
        "La reunión empezó tarde. Nadie sabía por qué. Al final, todos se fueron a casa.",
    ],
    "it": [
        "Buongiorno! Come sta? Il Sig. Rossi è arrivato ieri sera. Ha portato dei fiori.",
        "La riunione è finita alle sei. Poi siamo andati a cena, ecc. Era tardi.",
    ],
    "pt": [
        "Bom dia! Como vai? O Sr. Silva chegou ontem à noite. Ele trouxe flores para todos.",
        "A reunião terminou cedo. Ninguém sabia porquê. No fim, todos foram para casa.",
    ],
    "pl": [
        "Dzień dobry! Jak się masz? Spotkanie zaczyna się o godz. 9. Proszę być na czas.",
        "Wczoraj padał deszcz. Dziś świeci słońce. Jutro, np. w sobotę, pojedziemy nad morze.",
    ],
    "ru": [
        "Добрый день! Как дела? Встреча начнётся в 9 ч. утра. Пожалуйста, не опаздывайте.",
        "Он сказал: «Я приду». Но не пришёл. Т. е. мы ждали его напрасно.",
    ],
    "tr": [
        "Günaydın! Nasılsınız? Toplantı saat dokuzda başlıyor. Lütfen geç kalmayın.",
        "Dün yağmur yağdı. Bugün hava güneşli. Yarın, örn. cumartesi, denize gideceğiz.",
    ],
    "hi": [
        "नमस्ते! आप कैसे हैं? बैठक नौ बजे शुरू होगी। कृपया समय पर आइए।",
        "कल बारिश हुई। आज धूप है। कल हम समुद्र के किनारे जाएँगे।",
    ],
    "zh": [
        "你好。我很好！你呢？我有三个苹果。他说：“明天见。”然后就走了。",
        "今天天气很好。我们去公园散步吧！好吗？",
    ],
    "ja": [
        "こんにちは。元気ですか？はい、元気です！「また明日」と彼は言った。",
        "今日は晴れです。明日は雨でしょう。傘を持って行きましょう。",
    ],
    "ko": [
        "안녕하세요. 잘 지내세요? 네, 잘 지내요! 내일 다시 만나요.",
        "오늘은 날씨가 좋습니다. 공원에 갑시다. 좋아요?",
    ],
}

# (language, text, the sentences a reader expects): the hard cases, given to the splitters as written.
HARD_CASES = [
    ("en", "Dr. Smith arrived. He was late.", ["Dr. Smith arrived.", "He was late."]),
    ("en", "Use a tool, e.g. a hammer. Then stop.", ["Use a tool, e.g. a hammer.", "Then stop."]),
    ("en", "It costs 3.5 dollars. That is cheap.", ["It costs 3.5 dollars.", "That is cheap."]),
    ("en", "Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
    ("en", "I waited... Nobody came.", ["I waited...", "Nobody came."]),
    ("en", 'He said "Stop!" and left. She stayed.', ['He said "Stop!" and left.', "She stayed."]),
    ("en", '"Is it raining?" she asked. It was.', ['"Is it raining?" she asked.', "It was."]),
    ("en", "The U.S. economy grew. Prices fell.", ["The U.S. economy grew.", "Prices fell."]),
    ("en", "We met at 5 p.m. and talked.", ["We met at 5 p.m. and talked."]),
    ("en", "Mr. and Mrs. Brown came. Ms. Lee did not.", ["Mr. and Mrs. Brown came.", "Ms. Lee did not."]),
    ("en", "Really?! Yes. (Of course.) Fine.", ["Really?!", "Yes.", "(Of course.)", "Fine."]),
    ("en", "Version 2.0.1 is out. Update now!", ["Version 2.0.1 is out.", "Update now!"]),
    ("de", "Er kam z. B. am Montag. Dann ging er.", ["Er kam z. B. am Montag.", "Dann ging er."]),
    ("de", "Es kostet 3,50 Euro. Das ist billig.", ["Es kostet 3,50 Euro.", "Das ist billig."]),
    ("fr", "M. Dupont est là. Il attend.", ["M. Dupont est là.", "Il attend."]),
    ("es", "¿Vienes? Sí, ya voy.", ["¿Vienes?", "Sí, ya voy."]),
    ("ru", "Он пришёл в 5 ч. вечера. Все ждали.", ["Он пришёл в 5 ч. вечера.", "Все ждали."]),
    ("zh", "你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
    ("ja", "こんにちは。元気ですか？はい！", ["こんにちは。", "元気ですか？", "はい！"]),
    ("hi", "नमस्ते। आप कैसे हैं?", ["नमस्ते।", "आप कैसे हैं?"]),
]


def test_texts() -> dict[str, list[str]]:
    """The multilingual texts of tests/pipeline/text/test_segment.py (TEXTS), by language."""
    path = REPO / "tests" / "pipeline" / "text" / "test_segment.py"
    spec = importlib.util.spec_from_file_location("bench_test_segment_texts", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {lang: [text] for lang, text in module.TEXTS.items()}


def corpus(rows: int) -> dict[str, list[str]]:
    """Raw texts by language: the bench's own, the tests', examples/book.txt and `rows` of bench/scale.py's rows."""
    texts: dict[str, list[str]] = {lang: list(paragraphs) for lang, paragraphs in CORPUS.items()}
    for lang, extra in test_texts().items():
        texts.setdefault(lang, []).extend(extra)
    texts["en"].append((REPO / "examples" / "book.txt").read_text())
    rng = np.random.default_rng(0)
    texts["en"].extend(manifest_text(rng) for _ in range(rows))
    return texts


def paragraphs(texts: list[str], lang: str) -> list[str]:
    """What the segmenter splits: each text normalised, cut at its paragraph breaks."""
    return [p for t in texts for p in normalize_text(t, lang).split(PARAGRAPH_BREAK) if p]


def pysbd_starts(paragraph: str, lang: str) -> list[int]:
    """Sentence starts as barkpipe took them from pysbd (windowed, aligned onto the text; regex where it lacks)."""
    segmenter = _pysbd_segmenter(lang)
    if segmenter is None:  # a language pysbd lacks: barkpipe used the regex
        return regex_starts(paragraph, lang)
    starts: list[int] = []
    offset = 0
    while True:
        window = paragraph[offset : offset + PYSBD_WINDOW_CHARS]
        found, cursor = [], 0
        for sentence in segmenter.segment(window):
            sentence = sentence.strip()
            at = window.find(sentence, cursor) if sentence else cursor
            if at < 0:
                return regex_starts(paragraph, lang)
            found.append(at)
            cursor = at + len(sentence)
        if offset + len(window) >= len(paragraph):
            return starts + [offset + b for b in found]
        if len(found) < 2 or found[-1] == 0:
            space = paragraph.rfind(" ", offset + 1, offset + PYSBD_WINDOW_CHARS)
            starts.extend(offset + b for b in found)
            offset = space + 1 if space > offset else offset + PYSBD_WINDOW_CHARS
            continue
        starts.extend(offset + b for b in found[:-1])
        offset += found[-1]


@cache
def _pysbd_segmenter(lang: str):
    """pysbd's segmenter for `lang`, or None where it has none."""
    import pysbd  # a bench-only dependency now: imported where it is used, with the hint in the docstring
    from pysbd.languages import LANGUAGE_CODES

    return pysbd.Segmenter(language=lang, clean=False) if lang in LANGUAGE_CODES else None


sentencex_starts = segment._sentence_starts  # barkpipe's own (kept here: splitting_with swaps the segmenter's)


def regex_starts(paragraph: str, lang: str) -> list[int]:
    return [0, *(m.end() for m in SIMPLE_BOUNDARY.finditer(paragraph) if m.end() < len(paragraph))]


SPLITTERS: dict[str, Callable[[str, str], list[int]]] = {
    "pysbd": pysbd_starts,
    "sentencex": sentencex_starts,
    "regex": regex_starts,
}


def boundaries(starts: list[int], paragraph: str) -> set[int]:
    """The inner cuts (a start at 0 or at the end is no boundary)."""
    return {b for b in starts if 0 < b < len(paragraph)}


def sentences(text: str, starts: list[int]) -> list[str]:
    cuts = sorted(boundaries(starts, text))
    return [s for s in (text[a:b].strip() for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)) if s]


@contextmanager
def splitting_with(starts: Callable[[str, str], list[int]]):
    """The segmenter with another sentence splitter, to compare the chunk plans each gives."""
    kept = segment._sentence_starts
    segment._sentence_starts = starts
    try:
        yield
    finally:
        segment._sentence_starts = kept


def chunk_plan(paragraph: str, lang: str) -> list[tuple[int, int]]:
    return [(c.start, c.end) for c in segment.split_into_chunks(paragraph, language=lang)]


def measure(rows: int) -> dict:
    texts = corpus(rows)
    by_lang = {lang: paragraphs(t, lang) for lang, t in texts.items()}
    languages: dict[str, dict] = {}
    for lang, paras in by_lang.items():
        found = {name: [split(p, lang) for p in paras] for name, split in SPLITTERS.items()}
        plans = {}
        for name in ("pysbd", "sentencex"):
            with splitting_with(SPLITTERS[name]):
                plans[name] = [chunk_plan(p, lang) for p in paras]
        reference = [boundaries(s, p) for s, p in zip(found["pysbd"], paras, strict=True)]
        entry = {"paragraphs": len(paras), "pysbd_sentences": sum(len(r) + 1 for r in reference)}
        for name in ("sentencex", "regex"):
            mine = [boundaries(s, p) for s, p in zip(found[name], paras, strict=True)]
            same = sum(len(a & b) for a, b in zip(mine, reference, strict=True))
            entry[name] = {
                "same_paragraphs": sum(a == b for a, b in zip(mine, reference, strict=True)),
                "precision": same / max(1, sum(len(a) for a in mine)),
                "recall": same / max(1, sum(len(b) for b in reference)),
            }
        entry["same_chunk_plans"] = sum(a == b for a, b in zip(plans["pysbd"], plans["sentencex"], strict=True))
        languages[lang] = entry
    return {"languages": languages, "hard_cases": hard_cases(), "speed": speed(by_lang)}


def hard_cases() -> dict:
    out = {name: {"right": 0, "wrong": []} for name in SPLITTERS}
    for lang, text, expected in HARD_CASES:
        for name, split in SPLITTERS.items():
            got = sentences(text, split(text, lang))
            if got == expected:
                out[name]["right"] += 1
            else:
                out[name]["wrong"].append({"language": lang, "text": text, "got": got})
    return out


def speed(by_lang: dict[str, list[str]]) -> dict:
    """Sentences (pysbd's count) per second of each splitter over every paragraph, fastest of SPEED_REPEATS."""
    count = sum(len(boundaries(pysbd_starts(p, lang), p)) + 1 for lang, ps in by_lang.items() for p in ps)
    out = {}
    for name, split in SPLITTERS.items():
        best = float("inf")
        for _ in range(SPEED_REPEATS):
            started = time.perf_counter()
            for lang, ps in by_lang.items():
                for p in ps:
                    split(p, lang)
            best = min(best, time.perf_counter() - started)
        out[name] = {"seconds": best, "sentences_per_s": count / best}
    return {"sentences": count, **out}


def print_table(result: dict) -> None:
    print("| language | paragraphs | pysbd sentences | sentencex: same paragraphs | precision | recall | "
          "same chunk plans | regex: same paragraphs | precision | recall |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for lang, e in result["languages"].items():
        sx, rx = e["sentencex"], e["regex"]
        print(f"| {lang} | {e['paragraphs']} | {e['pysbd_sentences']} | {sx['same_paragraphs']} | "
              f"{sx['precision']:.3f} | {sx['recall']:.3f} | {e['same_chunk_plans']} | {rx['same_paragraphs']} | "
              f"{rx['precision']:.3f} | {rx['recall']:.3f} |")  # fmt: skip
    print()
    s = result["speed"]
    print(
        f"| splitter | hard cases right (of {len(HARD_CASES)}) | seconds ({s['sentences']} sentences) | sentences/s |"
    )
    print("|---|---|---|---|")
    for name in SPLITTERS:
        print(f"| {name} | {result['hard_cases'][name]['right']} | {s[name]['seconds']:.3f} | "
              f"{s[name]['sentences_per_s']:,.0f} |")  # fmt: skip
    for name in SPLITTERS:
        for w in result["hard_cases"][name]["wrong"]:
            print(f"  {name} [{w['language']}] {w['text']!r} -> {w['got']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=10_000, help="bench/scale.py manifest rows added to the English texts"
    )
    parser.add_argument("--json", default=str(BENCH / "out" / "splitter.json"))
    args = parser.parse_args()
    result = measure(args.rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    result["machine"] = {
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "sentencex": _version("sentencex"),
        "pysbd": _version("pysbd"),
        "commit": commit.stdout.strip(),
    }
    print_table(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"\nJSON: {args.json}")


def _version(name: str) -> str:
    from importlib.metadata import version  # only for the record

    return version(name)


if __name__ == "__main__":
    main()
