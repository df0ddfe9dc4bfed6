#!/usr/bin/env bash
# What a user meets, checked from outside after `make smoke` on a fresh clone:
#   base VENV  - a feature whose extra is absent stops with one line naming its install command (exit 2);
#   audiobook  - a fresh venv made with the one command docs/AUDIOBOOK.md gives, running the extra's
#                features: a run with the speech and speaker checks, then `barkpipe book` read back.
# Needs out/smoke from `make smoke` (its weights and manifest too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "user-checks: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
work=$(mktemp -d /tmp/barkpipe-user-XXXX)
trap 'rm -rf "$work"' EXIT

# A config with both listening checks on (YAML, as a user writes it). Random weights make noise (WER ~1):
# max_wer 5 lets a row's first chunk pass and become the speaker reference its later chunks are compared with.
listening_config() {
    sed -e 's|^  path: out/smoke|  path: '"$1"'|' -e 's|^quality:|quality:\n  on_fail: flag\n  speech: {backend: pocketsphinx, max_wer: 5}\n  speaker: {min_similarity: 0.5}|' \
        configs/smoke.yaml >"$work/listening.yaml"
    echo "$work/listening.yaml"
}

# `expect_refusal CMD...`: exit 2, every output line an `error:` line naming the audiobook install command.
expect_refusal() {
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    [[ $rc == 2 ]] || die "expected exit 2 from '$*', got $rc:\n$out"
    if grep -qv "^error: .*pip install 'barkpipe\[audiobook\]'" <<<"$out"; then die "'$*' printed more than the one-line refusal:\n$out"; fi
    log "ok: '$*' -> $(head -n1 <<<"$out")"
}

base() {
    local bin=$1/bin
    "$bin/python" -c 'import av' 2>/dev/null && die "$1 has PyAV: not a base install"
    expect_refusal "$bin/barkpipe" book out/smoke --out "$work/book.m4b"
    expect_refusal "$bin/barkpipe" validate "$(listening_config "$work/out-base")"
    expect_refusal "$bin/barkpipe" run "$(listening_config "$work/out-base")"
    [[ ! -e $work/out-base/summary.json ]] || die "a refused run wrote its output"
}

audiobook() {
    local venv=$work/venv-audiobook
    # docs/AUDIOBOOK.md's install command for a clone, into a venv of its own.
    make setup-audiobook VENV="$venv"
    "$venv/bin/barkpipe" run "$(listening_config "$work/out-audiobook")" || die "run with the listening checks failed"
    "$venv/bin/python" - "$work/out-audiobook" <<'PY' || die "the listening checks left no measures"
import sys, pandas as pd
meta = pd.read_parquet(f"{sys.argv[1]}/metadata")
measures = [dict(c["measures"]) for chunks in meta["chunks"] for c in chunks]  # a Parquet map: (key, value) pairs
assert len(meta) == 4 and measures, meta
assert all("wer" in m for m in measures), measures
# A row's first chunk is its speaker reference: the later chunks carry a similarity.
similar = [m["speaker_similarity"] for m in measures if "speaker_similarity" in m]
assert similar, measures
print(f"user-checks: ok: {len(meta)} rows, {len(measures)} chunks with a wer, {len(similar)} with speaker_similarity",
      file=sys.stderr)
PY
    "$venv/bin/barkpipe" book "$work/out-audiobook" --out "$work/book.m4b" --title "Smoke" || die "book failed"
    "$venv/bin/python" -c '
import sys
from pipeline.book import read_m4b_chapters
chapters = read_m4b_chapters(sys.argv[1])
assert len(chapters) == 4 and all(c["end_s"] > c["start_s"] for c in chapters), chapters
print(f"user-checks: ok: book.m4b has {len(chapters)} chapters", file=sys.stderr)' "$work/book.m4b"
}

case ${1:-} in
    base) base "${2:-.venv}" ;;
    audiobook) audiobook ;;
    *) echo "usage: $0 base [VENV] | audiobook" >&2; exit 2 ;;
esac
