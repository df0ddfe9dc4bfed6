"""The community HuBERT quantizer (gitmylo's bark-voice-cloning): HuBERT features [T, 768] -> Bark semantic tokens."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from bark_model.constants import SEMANTIC_VOCAB_SIZE

# Facts of the published quantizers (all trained on `hubert_base_ls960`):
HUBERT_LAYER = 9  # they read fairseq's output_layer=9: the output of the 9th transformer layer
HUBERT_RATE = 16_000  # HuBERT's input sample rate
LSTM_LAYERS = 2
INTERMEDIATE_SIZE = 4096  # version 1 puts Linear(hidden, 4096) between the LSTM and the classifier
VERSIONS = (0, 1)
# The checkpoint is torch.save(state_dict) with one extra zip member `<name>/.info` holding this JSON;
# files without it are the first release: version 0 with the defaults below.
INFO_SUFFIX = "/.info"


@dataclass(frozen=True)
class QuantizerConfig:
    input_size: int = 768
    hidden_size: int = 1024
    output_size: int = SEMANTIC_VOCAB_SIZE
    version: int = 0

    def __post_init__(self):
        if self.version not in VERSIONS:
            raise ValueError(f"quantizer version must be one of {VERSIONS}, got {self.version!r}")
        if self.output_size != SEMANTIC_VOCAB_SIZE:
            raise ValueError(f"quantizer output_size is {self.output_size}; Bark needs {SEMANTIC_VOCAB_SIZE} classes")
        if min(self.input_size, self.hidden_size) < 1:
            raise ValueError(f"quantizer sizes must be positive, got {self.input_size}, {self.hidden_size}")


class SemanticQuantizer(nn.Module):
    """2-layer LSTM over HuBERT features, (v1: a Linear to 4096,) Linear to 10 000 classes; argmax is the token."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_size, config.hidden_size, LSTM_LAYERS, batch_first=True)
        width = config.hidden_size
        self.intermediate = nn.Linear(width, INTERMEDIATE_SIZE) if config.version == 1 else None
        if self.intermediate is not None:
            width = INTERMEDIATE_SIZE
        self.fc = nn.Linear(width, config.output_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, T, in] -> logits [B, T, 10000]
        x, _ = self.lstm(features)
        if self.intermediate is not None:
            x = self.intermediate(x)  # no activation between the two Linears in the published model
        return self.fc(x)

    @torch.inference_mode()
    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features [T, in] -> semantic tokens [T] int64 (argmax; the model's log-softmax does not change it)."""
        if features.ndim != 2 or features.shape[-1] != self.config.input_size:
            raise ValueError(f"quantizer features must be [T, {self.config.input_size}], got {list(features.shape)}")
        return self(features[None].float())[0].argmax(dim=-1).to(torch.int64)


def read_config(path: str | Path) -> QuantizerConfig:
    """The `.info` member's sizes and version, or the first release's defaults when there is none."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [n for n in archive.namelist() if n.endswith(INFO_SUFFIX)]
            if not infos:
                return QuantizerConfig()
            raw = json.loads(archive.read(infos[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path} is not a quantizer checkpoint (a torch zip file): {err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: its .info member is not JSON: {err}") from None
    keys = ("input_size", "hidden_size", "output_size", "version")
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), int) for k in keys):
        raise ValueError(f"{path}: its .info must hold integers {list(keys)}, got {raw!r}")
    return QuantizerConfig(**{k: raw[k] for k in keys})


def load_quantizer(path: str | Path, device: str | torch.device = "cpu") -> SemanticQuantizer:
    """Load a published quantizer (`quantifier_*.pth`) safely and strictly; eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"quantizer checkpoint not found: {path}")
    config = read_config(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a quantizer state dict")
    model = SemanticQuantizer(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match a version-{config.version} quantizer: missing {missing}, unexpected {unexpected}"
        )
    for key, param in expected.items():
        if tuple(state[key].shape) != tuple(param.shape):
            raise ValueError(f"{path}: {key} has shape {list(state[key].shape)}, expected {list(param.shape)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def save_quantizer(model: SemanticQuantizer, path: str | Path) -> None:
    """Write the community format: the state dict, then `<stem>/.info` appended to the same zip."""
    path = Path(path)
    torch.save(model.state_dict(), path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{path.stem}{INFO_SUFFIX}", json.dumps(asdict(model.config)))
