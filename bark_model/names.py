"""What bark_model looks for and accepts, by name and without torch: weight files, voice presets, devices, precisions.

The one list of each: bark_model reads the weights by these names, and the pipeline checks and
fetches them by the same names without paying torch's import.
"""

import re

# Suno layout: one checkpoint per model and size, the EnCodec checkpoint, and mBERT's WordPiece vocabulary.
SUNO_FILES = {
    "large": {"text": "text_2.pt", "coarse": "coarse_2.pt", "fine": "fine_2.pt"},
    "small": {"text": "text.pt", "coarse": "coarse.pt", "fine": "fine.pt"},
}
CODEC_FILE = "encodec_24khz-d7cc33bc.th"
VOCAB_FILE = "vocab.txt"
# The copy of that vocabulary shipped in bark_model/assets/ (what make-random writes as vocab.txt).
BUNDLED_VOCAB = "bert-base-multilingual-cased-vocab.txt"

# Voice presets: Suno's voices/<name>.npz, or the Hugging Face speaker_embeddings/ folder of .npy
# files listed per preset in HF_VOICE_INDEX. A preset may sit in a subfolder ("v2/en_speaker_6").
VOICE_FOLDERS = ("voices", "speaker_embeddings")
HF_VOICE_INDEX = "speaker_embeddings_path.json"
PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")  # the arrays of a voice prompt

# Hugging Face layout: config.json and one BarkModel file (the first of HF_WEIGHT_FILES present).
HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_TOKENIZER_FILES = ("tokenizer.json", VOCAB_FILE)  # one is needed; the first present is read
# The sub-model sections of config.json, by role.
HF_CONFIG_KEYS = {"text": "semantic_config", "coarse": "coarse_acoustics_config", "fine": "fine_acoustics_config"}
# Small files of the Hugging Face layout that the engine or its tokenizer may read besides those.
HF_SIDE_FILES = (
    "generation_config.json", *HF_TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json",
    HF_VOICE_INDEX,
)  # fmt: skip

# Written by random_weights next to weights that only make noise (tests, demos, benchmarks).
RANDOM_MARKER = "RANDOM_WEIGHTS.txt"

DEVICES = "auto, cpu, cuda, cuda:N or mps"  # what a device name may be, for messages
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # the same, to fullmatch
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # bark_model.device.DTYPES gives each its activation dtype
