"""`barkpipe weights download`: the only code in barkpipe that touches the network."""

from __future__ import annotations

from pathlib import Path

from bark_model.names import (
    CODEC_FILE,
    HF_CONFIG_FILE,
    HF_SIDE_FILES,
    HF_VOICE_INDEX,
    HF_WEIGHT_FILES,
    SUNO_FILES,
    VOCAB_FILE,
    VOICE_FOLDERS,
)

HF_REPOS = {"large": "suno/bark", "small": "suno/bark-small"}
SUNO_REPO = "suno/bark"  # holds the raw .pt files of both sizes
VOCAB_REPO = "google-bert/bert-base-multilingual-cased"
ENCODEC_URL = "https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th"
ENCODEC_SHA256_PREFIX = "d7cc33bc"
# huggingface_hub allow_patterns: the presets' .npy files sit in speaker_embeddings/ and its subfolders.
VOICE_FILES = [HF_VOICE_INDEX, f"{VOICE_FOLDERS[1]}/*", f"{VOICE_FOLDERS[1]}/**/*"]
HF_LAYOUT_FILES = [HF_CONFIG_FILE, *HF_WEIGHT_FILES, *HF_SIDE_FILES, *VOICE_FILES[1:]]


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
        source = hub(SUNO_REPO)
        for name in SUNO_FILES[model].values():
            hf_hub_download(SUNO_REPO, name, local_dir=out)
        source = hub(VOCAB_REPO)
        hf_hub_download(VOCAB_REPO, VOCAB_FILE, local_dir=out)
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
