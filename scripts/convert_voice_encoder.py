"""Convert Resemblyzer's `pretrained.pt` into pipeline/audio/assets/voice_encoder.safetensors (`--check`: compare).

`pretrained.pt` (Resemblyzer 0.1.4's wheel, 17 MB) is a training checkpoint, a dict of plain tensors
that `torch.load(weights_only=True)` reads: `step` (1564501), `optimizer_state` (Adam's moments) and
`model_state`, the network's 12 LSTM/Linear tensors plus `similarity_weight`/`similarity_bias`, the
GE2E loss's scale and bias, used only in training. Only the network's tensors are kept, fp32, as they are.

    python scripts/convert_voice_encoder.py [--source PATH/pretrained.pt] [--check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load, save

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.audio.voice_encoder import WEIGHTS, VoiceEncoderNet  # noqa: E402

# The file's own record of where it came from (safetensors string metadata).
METADATA = {
    "source": "resemblyzer 0.1.4 (https://github.com/resemble-ai/Resemblyzer) resemblyzer/pretrained.pt",
    "license": "Apache-2.0, Copyright 2019 Resemble.AI",
    "step": "1564501",
}


def installed_checkpoint() -> Path:
    """pretrained.pt inside the installed resemblyzer package, found without importing it (librosa)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise SystemExit("resemblyzer is not installed; pass --source PATH/pretrained.pt")
    return Path(spec.origin).parent / "pretrained.pt"


def model_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's tensors from the training checkpoint, by our module's names, checked by name and shape."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state"]
    expected = {name: tuple(t.shape) for name, t in VoiceEncoderNet().state_dict().items()}
    missing = sorted(set(expected) - set(state))
    wrong = sorted(n for n in expected if n in state and tuple(state[n].shape) != expected[n])
    if missing or wrong:
        raise SystemExit(f"{checkpoint}: missing {missing}, wrong shape {wrong}")
    dropped = sorted(set(state) - set(expected))
    print(f"{checkpoint}: keeping {len(expected)} tensors, dropping {dropped}", file=sys.stderr)
    return {name: state[name].to(torch.float32).contiguous() for name in sorted(expected)}


def converted(checkpoint: Path) -> bytes:
    """The safetensors file's bytes (its metadata's order may vary between runs: compare with `same_content`)."""
    return save(model_tensors(checkpoint), metadata=METADATA)


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two safetensors files hold the same metadata and the same tensors, bit for bit."""
    header_a, header_b = (json.loads(x[8 : 8 + int.from_bytes(x[:8], "little")]) for x in (a, b))
    tensors_a, tensors_b = load(a), load(b)
    return (
        header_a.get("__metadata__") == header_b.get("__metadata__")
        and tensors_a.keys() == tensors_b.keys()
        and all(tensors_a[k].dtype == tensors_b[k].dtype and torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="Resemblyzer's pretrained.pt (default: the installed package's)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args()
    data = converted(args.source or installed_checkpoint())
    if args.check:
        same = args.out.is_file() and same_content(args.out.read_bytes(), data)
        print(f"{args.out}: {'up to date' if same else 'differs from the conversion'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
