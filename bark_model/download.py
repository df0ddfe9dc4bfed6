"""`barkpipe weights download`: the only code in barkpipe that touches the network."""

from __future__ import annotations

from pathlib import Path

HF_REPOS = {"large": "suno/bark", "small": "suno/bark-small"}
SUNO_REPO = "suno/bark"  # holds the raw .pt files of both sizes
VOCAB_REPO = "google-bert/bert-base-multilingual-cased"
ENCODEC_URL = "https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th"
ENCODEC_SHA256_PREFIX = "d7cc33bc"
HF_LAYOUT_FILES = [
    "config.json", "generation_config.json", "pytorch_model.bin", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "speaker_embeddings_path.json",
    "speaker_embeddings/*", "speaker_embeddings/**/*",
]  # fmt: skip
VOICE_FILES = ["speaker_embeddings_path.json", "speaker_embeddings/*", "speaker_embeddings/**/*"]


class DownloadError(RuntimeError):
    """The Hub or the EnCodec file server could not be reached or refused the request."""


def download_weights(out_dir: str | Path, model: str = "large", layout: str = "hf") -> Path:
    """Fetch Bark into `out_dir` with progress bars; interrupted downloads resume."""
    if model not in HF_REPOS:
        raise ValueError(f"model must be one of {sorted(HF_REPOS)}, got {model!r}")
    if layout not in ("hf", "suno"):
        raise ValueError(f"layout must be 'hf' or 'suno', got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = "the Hugging Face Hub"  # what is being fetched when a failure comes, for its message
    try:
        from huggingface_hub import constants, hf_hub_download, snapshot_download

        def hub(repo: str) -> str:
            return f"{constants.ENDPOINT.rstrip('/')}/{repo}"

        if layout == "hf":
            source = hub(HF_REPOS[model])
            snapshot_download(HF_REPOS[model], local_dir=out, allow_patterns=HF_LAYOUT_FILES)
            _check_complete(out)
            return out
        from bark_model.checkpoints import CODEC_FILE, SUNO_FILES

        source = hub(SUNO_REPO)
        for name in SUNO_FILES[model].values():
            hf_hub_download(SUNO_REPO, name, local_dir=out)
        source = hub(VOCAB_REPO)
        hf_hub_download(VOCAB_REPO, "vocab.txt", local_dir=out)
        source = hub(HF_REPOS[model])
        snapshot_download(HF_REPOS[model], local_dir=out, allow_patterns=VOICE_FILES)
        if not (out / CODEC_FILE).is_file():
            import torch.hub

            source = ENCODEC_URL
            torch.hub.download_url_to_file(ENCODEC_URL, str(out / CODEC_FILE), hash_prefix=ENCODEC_SHA256_PREFIX)
        _check_complete(out)
    except ImportError as err:
        raise DownloadError(
            f"`barkpipe weights download` needs huggingface_hub ({err}); pip install huggingface_hub"
        ) from err
    except Exception as err:  # network libraries raise many types; all mean the same to a user
        first = (str(err).splitlines() or [""])[0][:200]
        raise DownloadError(
            f"could not download Bark {model} from {source} ({type(err).__name__}: {first}); check the network "
            "connection, or HF_ENDPOINT (unset for huggingface.co) and HF_HUB_OFFLINE (unset to go online)"
        ) from err
    return out


def _check_complete(out: Path) -> None:
    """huggingface_hub returns quietly when offline; make sure the files really arrived."""
    from bark_model.checkpoints import detect_layout

    try:
        detect_layout(out)
    except FileNotFoundError as err:
        raise DownloadError(f"the download did not complete: {err}") from err
