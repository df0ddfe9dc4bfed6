"""Voice segments from `[voice: NAME]` tags and `NAME:` speaker lines (pipeline.text.voices)."""

import pytest

from pipeline.text.voices import VoiceSegment, check_speakers, split_voiced, split_voiced_chunks

SPEAKERS = {"ALICE": "v2/en_speaker_9", "Bob": "v2/en_speaker_6"}
NARRATOR = "v2/en_speaker_1"


def voices_and_texts(segments):
    return [(s.voice, " ".join(s.text.split())) for s in segments]


def test_text_without_tags_is_one_segment_in_the_row_voice():
    assert split_voiced("Just narration.\n\nTwo paragraphs.", NARRATOR) == [
        VoiceSegment(NARRATOR, "Just narration.\n\nTwo paragraphs.", False)
    ]


def test_inline_tag_switches_from_there_on_and_default_switches_back():
    text = "Once upon a time. [voice: v2/en_speaker_3] I am the wolf.\n\nStill the wolf. [voice: default] The end."
    assert voices_and_texts(split_voiced(text, NARRATOR)) == [
        (NARRATOR, "Once upon a time."),
        ("v2/en_speaker_3", "I am the wolf. Still the wolf."),
        (NARRATOR, "The end."),
    ]


def test_speaker_lines_last_until_the_next_speaker_or_the_paragraph_end():
    text = "The two met at noon.\n\nALICE: Hello, Bob.\nHow are you?\nbob: Fine, thanks.\n\nThey walked on."
    segments = split_voiced(text, NARRATOR, SPEAKERS)
    assert voices_and_texts(segments) == [
        (NARRATOR, "The two met at noon."),
        ("v2/en_speaker_9", "Hello, Bob. How are you?"),  # the prefix is not spoken; case is ignored
        ("v2/en_speaker_6", "Fine, thanks."),
        (NARRATOR, "They walked on."),
    ]
    assert [s.paragraph_break_after for s in segments] == [True, False, True, False]


def test_a_colon_line_is_dialogue_only_for_names_in_the_speakers_map():
    text = "Note: this is narration.\nALICE: and this is Alice."
    assert voices_and_texts(split_voiced(text, NARRATOR, SPEAKERS)) == [
        (NARRATOR, "Note: this is narration."),
        ("v2/en_speaker_9", "and this is Alice."),
    ]


def test_a_tag_may_name_a_speaker_and_resolve_maps_only_specs_written_in_the_text():
    resolved = split_voiced(
        "Hi. [voice: bob] Hello. [voice: mine.npz] Mine.\nALICE: Me.", None, SPEAKERS, resolve=lambda s: f"/voices/{s}"
    )
    assert voices_and_texts(resolved) == [
        (None, "Hi."),
        ("v2/en_speaker_6", "Hello."),
        ("/voices/mine.npz", "Mine."),
        ("v2/en_speaker_9", "Me."),
    ]


def test_an_unknown_voice_is_one_sentence_naming_the_tag():
    def resolve(spec):
        if spec.endswith(".npz"):
            raise ValueError(f"voice {spec!r} is not a file inside generation.voice_dirs")
        return spec

    with pytest.raises(ValueError, match=r"^\[voice: ghost.npz\]: voice 'ghost.npz' is not a file"):
        split_voiced("Hi. [voice: ghost.npz] Boo.", NARRATOR, SPEAKERS, resolve=resolve)
    with pytest.raises(ValueError, match="names no voice"):
        split_voiced("Hi. [voice: ] Boo.", NARRATOR)


def test_no_chunk_spans_two_voices_and_breaks_survive():
    text = (
        "Narration that goes on for a while. " * 6
        + "\n\nALICE: "
        + "Alice talks and talks. " * 6
        + "\nBOB: Short.\n\nThe end."
    )
    chunks = split_voiced_chunks(text, NARRATOR, SPEAKERS, max_tokens=256, target_seconds=4.0, max_seconds=6.0)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    by_voice = [c.voice for c in chunks]
    assert by_voice[0] == NARRATOR and by_voice[-1] == NARRATOR and "v2/en_speaker_6" in by_voice
    for c in chunks:
        assert ("Alice" in c.text) == (c.voice == "v2/en_speaker_9"), c
        assert "ALICE" not in c.text and "BOB" not in c.text
    # the chunk before BOB's line ends Alice's speech but not her paragraph; BOB's ends one
    bob = next(i for i, c in enumerate(chunks) if c.voice == "v2/en_speaker_6")
    assert not chunks[bob - 1].paragraph_break_after and chunks[bob].paragraph_break_after
    assert not chunks[-1].paragraph_break_after


def test_check_speakers_names_the_bad_entry():
    check_speakers(SPEAKERS)
    with pytest.raises(ValueError, match=r"generation.speakers: '1st' is not a speaker name"):
        check_speakers({"1st": "v2/en_speaker_1"})
    with pytest.raises(ValueError, match="same name"):
        check_speakers({"Alice": "a", "ALICE": "b"})
    with pytest.raises(ValueError, match="reserved"):
        check_speakers({"Default": "a"})

    def resolve(spec):
        raise ValueError(f"voice {spec!r} is not a valid preset name")

    with pytest.raises(ValueError, match=r"^generation.speakers.Bob: voice 'x y' is not a valid preset"):
        check_speakers({"Bob": "x y"}, resolve)


def test_config_speakers_map_is_checked_when_loaded():
    from pipeline.config import validate_config
    from pipeline.configerrors import ConfigError

    base = {"input": {"path": "m.parquet"}, "output": {"path": "out"}, "model": {"weights": "w"}}
    cfg = validate_config(base | {"generation": {"speakers": SPEAKERS}})
    assert cfg.generation.speakers == SPEAKERS
    with pytest.raises(ConfigError, match=r"generation.speakers: .*'9lives' is not a speaker name"):
        validate_config(base | {"generation": {"speakers": {"9lives": "v2/en_speaker_1"}}})
