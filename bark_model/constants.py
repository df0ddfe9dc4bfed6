"""Bark's fixed numbers: token offsets, pads, rates and window sizes, each named once."""

CONTEXT_WINDOW = 1024  # block size (learned position table length) of every Bark GPT

# Rates.
SAMPLE_RATE = 24_000  # EnCodec 24 kHz output
SEMANTIC_RATE_HZ = 49.9  # semantic tokens per second of audio (49.9, not 50)
COARSE_RATE_HZ = 75  # EnCodec frames per second
SAMPLES_PER_FRAME = 320  # SAMPLE_RATE / COARSE_RATE_HZ, the codec's hop length
# Coarse tokens (both codebooks counted) per semantic token: 75 / 49.9 * 2 = 3.006...
SEMANTIC_TO_COARSE_RATIO = COARSE_RATE_HZ / SEMANTIC_RATE_HZ * 2

# Codebooks.
CODEBOOK_SIZE = 1024
N_COARSE_CODEBOOKS = 2
N_FINE_CODEBOOKS = 8

# Text (semantic) model token space.
SEMANTIC_VOCAB_SIZE = 10_000  # semantic ids 0..9999
SEMANTIC_PAD_TOKEN = 10_000  # pads the semantic history and is the text model's EOS id
TEXT_ENCODING_OFFSET = 10_048  # added to every mBERT token id
TEXT_PAD_TOKEN = 129_595  # pads the 256-slot text field
SEMANTIC_INFER_TOKEN = 129_599  # "start generating" marker after text + history
MAX_TEXT_TOKENS = 256  # text slots of the semantic model's input
MAX_SEMANTIC_HISTORY = 256  # history slots of the semantic model's input
MAX_SEMANTIC_TOKENS = 768  # longest semantic generation (~15.4 s)
DEFAULT_MIN_EOS_P = 0.2  # stop when P(EOS) reaches this

# Coarse model token space.
COARSE_SEMANTIC_PAD_TOKEN = 12_048  # pads the 256-slot semantic field
COARSE_INFER_TOKEN = 12_050  # "start generating" marker
COARSE_OFFSET = SEMANTIC_VOCAB_SIZE  # codebook-0 code c is token 10000 + c (codebook 1: +1024 more)
MAX_COARSE_INPUT = 256  # semantic slots of one coarse window's input
MAX_COARSE_HISTORY = 630  # coarse tokens of history a window sees
COARSE_WINDOW = 60  # coarse tokens generated per window (KV cache reset between windows)

# Fine model.
FINE_PAD_CODE = 1024  # "not known yet" code in the fine model's input
FINE_WINDOW = 1024  # frames per fine window
FINE_STEP = 512  # window stride; also the longest fine history used
FINE_HISTORY = 512

# Sampling defaults of the official API.
DEFAULT_TEXT_TEMP = 0.7
DEFAULT_WAVEFORM_TEMP = 0.7  # coarse stage
DEFAULT_FINE_TEMP = 0.5  # fixed in the official API
