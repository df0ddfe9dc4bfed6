"""Audio names: sharded folders, distinct per id and revision, inside audio/, and every name ever written recognised."""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter

from pipeline.manifest.columns import safe_name
from pipeline.output.layout import AUDIO_SHARD_CHARS, audio_key, audio_name, audio_shard, audio_stems

DIGEST = "0123456789abcdef"  # a content name's 16 hex
# Plain, look-alike and unsafe ids: a 2-hex id, one spelled like a redo folder, one like a content
# name, a path, a non-ASCII one, a long plain one (kept) and a too-long one (slugged).
IDS = ["a", "ab", "r1", "a.r1", f"a-{DIGEST}", "../../escape", "a/b", "日本語 テキスト", "p" * 128, "q" * 300]


def test_a_plain_id_goes_to_the_folder_named_by_its_hash():
    # Pinned: names already written must keep meaning the same rows in later releases.
    assert hashlib.sha256(b"a").hexdigest().startswith("ca")
    assert audio_name("a", "wav") == "ca/a.wav" and audio_key("ca/a", "wav") == "audio/ca/a.wav"
    assert audio_name("a", "flac", 3) == "ca/r3/a.flac"  # a redo stays in its row's folder


def test_every_name_stays_inside_its_shard_folder_and_fits_a_file_system():
    for row_id in IDS:
        stem = safe_name(row_id)
        for revision in (0, 1, 12):
            key = audio_key(audio_name(stem, "opus", revision)[: -len(".opus")], "opus")
            shard, *rest = key.removeprefix("audio/").split("/")
            assert key.startswith("audio/") and posixpath.normpath(key) == key and ".." not in key, row_id
            assert shard == audio_shard(stem) and len(shard) == AUDIO_SHARD_CHARS, row_id
            assert rest == ([] if revision == 0 else [f"r{revision}"]) + [f"{stem}.opus"], row_id
            assert len(rest[-1].encode()) + len("-") + 16 <= 255, row_id  # a content name fits too


def test_unsafe_and_long_ids_get_a_slug_and_hash_inside_audio():
    escape, long = audio_name(safe_name("../../escape"), "wav"), audio_name(safe_name("q" * 300), "wav")
    assert escape.split("/")[1].startswith("escape-") and escape.count("/") == 1
    assert long.split("/")[1] == f"{'q' * 64}-{hashlib.sha256(('q' * 300).encode()).hexdigest()[:12]}.wav"
    assert audio_name(safe_name("p" * 128), "wav").endswith(f"/{'p' * 128}.wav")  # the longest plain id is kept


def test_names_never_meet_across_ids_and_revisions():
    names = [audio_name(safe_name(i), "wav", r) for i in IDS for r in (0, 1, 2)]
    assert len(set(names)) == len(names) == 3 * len(IDS)


def test_shards_spread_evenly_over_ids_that_share_a_prefix():
    folders = 16**AUDIO_SHARD_CHARS
    per_folder = 400
    counts = Counter(audio_shard(safe_name(f"row-{i:07d}")) for i in range(folders * per_folder))
    assert len(counts) == folders
    # 5 standard deviations (sqrt(400) = 20) either side; a prefix-based shard would put all in one folder.
    assert per_folder - 100 < min(counts.values()) <= max(counts.values()) < per_folder + 100


def test_every_key_written_is_recognised_as_its_ids():
    for row_id in IDS:
        stem = safe_name(row_id)
        for revision in (0, 1, 7):
            name = audio_name(stem, "mp3", revision)[: -len(".mp3")]
            assert stem in audio_stems(audio_key(name, "mp3")), (row_id, revision)
            assert stem in audio_stems(audio_key(name, "mp3", b"other bytes")), (row_id, revision)


def test_content_names_belong_to_the_stem_whose_folder_holds_them():
    own = f"a-{DIGEST}"  # an id spelled like a's content-named file: its own file lies in its own folder
    assert audio_shard("a") != audio_shard(own)  # else that folder holds both, as the flat layout did
    assert audio_stems(f"audio/{audio_shard('a')}/{own}.wav") == ("a",)
    assert audio_stems(f"audio/{audio_shard(own)}/{own}.wav") == (own,)
    assert audio_stems(f"audio/{audio_shard('a')}/r2/{own}.wav") == ("a",)


def test_keys_of_the_flat_layout_before_shards_are_still_ours():
    assert audio_stems("audio/a.wav") == ("a",)
    assert audio_stems("audio/r3/a.flac") == ("a",)
    assert audio_stems(f"audio/x-{DIGEST}.opus") == (f"x-{DIGEST}", "x")
    assert audio_stems(f"audio/r2/x-{DIGEST}.ogg") == (f"x-{DIGEST}", "x")


def test_foreign_keys_are_not_ours():
    wrong = "cb" if audio_shard("a") != "cb" else "cc"
    foreign = [
        "audio/a.txt", "audio/sub/a.wav", "audio/r0/a.wav", "metadata/a.wav", "audio/.wav", "audio/ca/.wav",
        f"audio/{wrong}/a.wav",  # a folder that is not a's
        "audio/CA/a.wav", "audio/c/a.wav", "audio/cab/a.wav",  # not a shard's spelling
        "audio/r1/ca/a.wav", "audio/ca/r0/a.wav", "audio/ca/ca/a.wav", "audio/ca/r1/r1/a.wav",  # not our nesting
    ]  # fmt: skip
    for key in foreign:
        assert audio_stems(key) == (), key
