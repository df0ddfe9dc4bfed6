"""The SSML subset: parsing into segments, hostile input as one row's error, exact breaks in the audio."""

from __future__ import annotations

import numpy as np
import pytest
from support.stages import batch, config

from pipeline.audio.assemble import join_chunks
from pipeline.batch.stages.prepare import PrepareStage
from pipeline.text.chunks import TextError, plan_text
from pipeline.text.ssml import MAX_SSML_DEPTH, SsmlError, SsmlSegment, parse_ssml

SPEAKERS = {"ALICE": "v2/en_speaker_9"}
HOSTILE = {
    "billion laughs": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        "<speak>&lol2;</speak>",
        "may not hold a DOCTYPE or ENTITY declaration",
    ),
    "external entity": (
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><speak>&xxe;</speak>',
        "may not hold a DOCTYPE or ENTITY declaration",
    ),
    "undeclared entity": ("<speak>&xxe;</speak>", "not well-formed: undefined entity at line 1, column 8"),
    "1000 deep": ("<s>" * 1000 + "deep" + "</s>" * 1000, f"nests deeper than {MAX_SSML_DEPTH} tags"),
    "10 MB": ("<speak>" + "word " * 2_000_000 + "</speak>", "characters long (limit 100000)"),
    "unclosed": ("<speak><p>never closed</speak>", "not well-formed: mismatched tag at line 1, column 25"),
    "bare ampersand": ("Tom & Jerry", "not well-formed: not well-formed (invalid token) at line 1, column 6"),
}


def test_breaks_paragraphs_and_sentences_become_segments():
    parsed = parse_ssml('<speak><p><s>One.</s><s>Two.</s></p><p>Three <break time="1.5s"/> four '
                        '<break strength="weak"/><break time="300ms"/>five.</p></speak>')  # fmt: skip
    assert parsed.segments == [
        SsmlSegment("One. Two. \n\nThree", pause_after_s=1.5),
        SsmlSegment("four", pause_after_s=pytest.approx(0.5)),  # two breaks in a row add up
        SsmlSegment("five.", paragraph_break_after=True),
    ]
    assert parsed.notes == []


def test_sub_say_as_voice_lang_and_unknown_tags():
    parsed = parse_ssml(
        'The <sub alias="World Wide Web">WWW</sub> has <say-as interpret-as="cardinal">1,234</say-as> pages, '
        'the <say-as interpret-as="ordinal">3rd</say-as> by <say-as interpret-as="characters">r2d2</say-as> on '
        '<say-as interpret-as="date" format="dmy">25/12/2024</say-as>; call <say-as interpret-as="telephone">'
        '+1 555-0100</say-as>. <voice name="ALICE">Hi <prosody rate="slow">there</prosody>.</voice> '
        '<lang xml:lang="de">Am <say-as interpret-as="date" format="ymd">2024-05-03</say-as>.</lang>'
    )
    first, alice, german = parsed.segments
    assert first.text == (
        "The World Wide Web has one thousand, two hundred and thirty-four pages, the third by R two D two on "
        "December twenty-fifth, twenty twenty-four; call plus one, five five five, zero one zero zero."
    )
    assert (alice.text, alice.voice, alice.language) == ("Hi there.", "ALICE", None)
    assert (german.text, german.language) == ("Am dritter Mai zweitausendvierundzwanzig.", "de")
    assert parsed.notes == ["<prosody> is not supported; its text is read as written"]


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_or_malformed_ssml_is_one_line(case):
    text, words = HOSTILE[case]
    with pytest.raises(SsmlError) as err:
        parse_ssml(text)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('<break time="5 minutes"/>', "is not a time like"),
        ('a<break time="11s"/>b', "longer than 10 s"),
        ('<break strength="huge"/>', "must be one of none, x-weak"),
        ("<sub>WWW</sub>", "<sub> needs an alias"),
        ('<lang xml:lang="not a code">x</lang>', "is not a language code"),
        ('<say-as interpret-as="cardinal">many</say-as>', "'many', which is not a cardinal number"),
        ('<say-as interpret-as="date" format="mdy">2024</say-as>', "does not fit '2024'"),
        ('<say-as interpret-as="date" format="mdy">13/40/2024</say-as>', "no such day or month"),
    ],
)
def test_tags_used_wrongly_name_the_problem(text, words):
    with pytest.raises(SsmlError, match=words):
        parse_ssml(text)


def voices_and_texts(chunks):
    return [(c.voice, c.text) for c in chunks]


def test_a_voice_tag_gives_the_same_chunks_as_a_bracket_tag():
    tags = "The narrator. [voice: ALICE] I am Alice. [voice: v2/en_speaker_3] A stranger. [voice: default] Done."
    ssml = ('The narrator. <voice name="ALICE">I am Alice.</voice> <voice name="v2/en_speaker_3">A stranger.'
            "</voice> Done.")  # fmt: skip
    plain, _ = plan_text(tags, voice="v2/en_speaker_1", speakers=SPEAKERS)
    read, _ = plan_text(ssml, text_format="ssml", voice="v2/en_speaker_1", speakers=SPEAKERS)
    assert (
        voices_and_texts(read)
        == voices_and_texts(plain)
        == [
            ("v2/en_speaker_1", "The narrator."),
            ("v2/en_speaker_9", "I am Alice."),
            ("v2/en_speaker_3", "A stranger."),
            ("v2/en_speaker_1", "Done."),
        ]
    )


def test_emphasis_lexicon_and_languages_reach_the_chunk_texts():
    from pipeline.text.lexicon import parse_lexicon

    lex, _ = parse_lexicon("Hermione\ther-my-oh-nee\nzwei\tTSVAI\tde", "l.tsv")
    chunks, _ = plan_text('<p>Mr. <emphasis level="strong">Hermione has 2 cats</emphasis>.</p><break time="2s"/>'
                          '<lang xml:lang="de">Dr. Müller hat 2 Katzen.</lang>', text_format="ssml",
                          lexicon=lex)  # fmt: skip
    assert [(c.text, c.pause_after_s) for c in chunks] == [
        ("Mister HER-MY-OH-NEE HAS TWO CATS.", 2.0),
        ("Doktor Müller hat TSVAI Katzen.", None),  # German abbreviations and numbers, the de-only entry
    ]


def test_join_makes_each_break_exactly_that_long_in_zeros():
    sr = 24_000
    pieces = [np.full(sr // 2, 0.5, np.float32) for _ in range(3)]
    audio = join_chunks(pieces, sr, pause_s=0.25, crossfade_ms=10.0, pauses_after=[1.0, None, None])
    zeros = np.flatnonzero(audio == 0)
    runs = np.split(zeros, np.flatnonzero(np.diff(zeros) > 1) + 1)
    lengths = [len(r) / sr for r in runs]
    assert lengths == pytest.approx([1.0, 0.25], abs=2.5 / sr)  # the fades add one zero sample on each side
    with pytest.raises(ValueError, match="pauses_after has 1 entries"):
        join_chunks(pieces, sr, pauses_after=[1.0])


# -- through the prepare stage -------------------------------------------------------------------------------------


def test_the_prepare_stage_reads_ssml_rows_and_keeps_going_past_hostile_ones(tmp_path):
    lexicon = tmp_path / "lexicon.tsv"
    lexicon.write_text("Hermione\ther-MY-oh-nee\n", encoding="utf-8")
    cfg = config(generation={"lexicon": str(lexicon), "speakers": SPEAKERS})
    stage = PrepareStage("w", cfg.generation, cfg.segment)
    rows = [("ssml", 'Hermione waits.<break time="1s"/><voice name="ALICE">Hermione speaks.</voice>'),
            ("plain", 'Hermione <break time="1s"/> reads tags aloud.'),
            ("own", "Hermione again.")]  # fmt: skip
    rows += [(name, text) for name, (text, _) in HOSTILE.items() if len(text) < 99_000]  # 10 MB: max_text_chars
    formats = ["ssml", None, None] + ["SSML"] * (len(rows) - 3)
    own_lexicon = [None, None, "hermione\tHER-mee-own"] + [None] * (len(rows) - 3)
    out = stage(batch(rows, text_format=formats, lexicon=own_lexicon)).to_pylist()
    ssml, plain, own, *bad = out
    assert [(c["text"], c["voice"]) for c in ssml["plan"]] == [
        ("her-MY-oh-nee waits.", None),
        ("her-MY-oh-nee speaks.", "v2/en_speaker_9"),
    ]
    assert " ".join(c["text"] for c in plain["plan"]) == 'her-MY-oh-nee <break time="1s"/> reads tags aloud.'  # plain
    assert own["plan"][0]["text"] == "HER-mee-own again."
    assert [(r["id"], r["error_stage"]) for r in bad] == [(r[0], "validate") for r in rows[3:]]
    for row, (name, (_, words)) in zip(bad, [(n, HOSTILE[n]) for n, _ in rows[3:]], strict=True):
        assert words in row["error"], name
    assert [c["pause_after_s"] for c in ssml["plan"]] == [1.0, None]


def test_a_break_is_exact_silence_in_the_run_output():
    from support.stages import SR, decode, run_stages

    text = 'One sentence here.<break time="750ms"/>Another sentence. Same paragraph.<p>A paragraph.</p>Last.'
    out = run_stages(batch([("x", text)], text_format=["ssml"])).to_pylist()[0]
    assert out["error"] is None
    assert [c["pause_after_s"] for c in out["chunks"]] == [0.75, None, None, None, None]
    audio = decode(out["audio"])  # support.stages' config: no trimming, no crossfade
    runs = zero_runs(audio, SR, longer_than_s=0.05)
    # The break, a sentence pause, then paragraph pauses before and after <p>.
    assert [length for _, length in runs] == pytest.approx([0.75, 0.1, 0.3, 0.3], abs=0.002)
    first = out["chunks"][0]["duration_s"]
    assert runs[0][0] == pytest.approx(first, abs=0.002)  # right after the first chunk


def test_input_text_format_is_the_default_and_bad_columns_are_row_errors():
    cfg = config()
    stage = PrepareStage("w", cfg.generation, cfg.segment, text_format="ssml")
    rows = stage(batch([("a", "Fish &amp; chips."), ("b", "x"), ("c", "y")], text_format=[None, "html", None],
                       lexicon=[None, None, "no tab"])).to_pylist()  # fmt: skip
    assert rows[0]["plan"][0]["text"] == "Fish & chips."
    assert rows[1]["error"] == "text_format 'html' is not one of plain, ssml; fix it or leave it empty"
    assert rows[2]["error"] == "lexicon column:1: no tab between word and respelling"
    with pytest.raises(TextError, match="text_format must be plain or ssml"):
        plan_text("x", text_format="rtf")


# -- `say` -----------------------------------------------------------------------------------------------------------


def zero_runs(audio: np.ndarray, sr: int, longer_than_s: float) -> list[tuple[float, float]]:
    """(start, length) in seconds of each run of exact zeros longer than `longer_than_s`."""
    padded = np.concatenate([[0], (audio == 0).astype(np.int8), [0]])
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(s / sr, (e - s) / sr) for s, e in zip(starts, ends, strict=True) if (e - s) / sr > longer_than_s]


@pytest.mark.slow
def test_say_ssml_breaks_are_exact_silences_in_the_wav(tiny_weights, tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "breaks.wav"
    text = '<speak>First words.<break time="1s"/>Second words.<break time="500ms"/>Third words.</speak>'
    result = CliRunner().invoke(app, ["say", text, "--ssml", "--weights", str(tiny_weights), "--out", str(out),
                                      "--max-duration", "0.5", "--temperature", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    audio, sr = sf.read(out, dtype="int16")
    runs = zero_runs(audio, sr, longer_than_s=0.1)
    # In order: the 1 s break after chunk 1, the 0.5 s break after chunk 2, each between sound.
    assert [length for _, length in runs] == pytest.approx([1.0, 0.5], abs=0.010)
    first, second = runs
    assert 0 < first[0] <= 0.5 + 0.01 and first[0] + first[1] < second[0] < len(audio) / sr - 0.05
    assert "3 chunk(s)" in result.output


def test_say_refuses_bad_ssml_and_lexicons_in_one_line(tiny_weights, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    base = ["--weights", str(tiny_weights), "--out", str(tmp_path / "x.wav")]
    bad = runner.invoke(app, ["say", "<speak><p>open</speak>", "--ssml", *base])
    assert bad.exit_code == 2 and "error: SSML is not well-formed: mismatched tag" in bad.output
    (tmp_path / "l.tsv").write_text("no tab\n")
    lexicon = runner.invoke(app, ["say", "Hi.", "--lexicon", str(tmp_path / "l.tsv"), *base])
    assert lexicon.exit_code == 2 and f"error: --lexicon: {tmp_path / 'l.tsv'}:1: no tab" in lexicon.output
    both = runner.invoke(app, ["say", "Hi.", "--ssml", "--no-split", *base])
    assert both.exit_code == 2 and "--ssml needs it parsed" in both.output
    assert "Traceback" not in bad.output + lexicon.output + both.output
