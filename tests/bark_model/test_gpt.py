"""The static KV cache: cached decoding equals a full forward, also with rows at different positions."""

import torch

from bark_model.config import GPTConfig
from bark_model.gpt import GPT, KVCache


def test_cached_decoding_equals_full_forward():
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=64, input_vocab_size=500, output_vocab_size=300)
    model = GPT(config).eval()
    seqs = torch.randint(0, 500, (3, 40))
    prefix = torch.tensor([10, 25, 17])  # each row's prompt length differs
    with torch.no_grad():
        full = model(seqs)  # [3, 40, 300]
        cache = KVCache.allocate(config, 3, 64, "cpu", torch.float32)
        # Right-padded prefill: each row's logits are read at its own last prompt position.
        width = int(prefix.max())
        logits = model(seqs[:, :width], positions=torch.arange(width).expand(3, width), cache=cache, kv_len=width, logit_index=prefix - 1)
        torch.testing.assert_close(logits, full[torch.arange(3), prefix - 1], rtol=1e-5, atol=1e-5)
        for step in range(12):
            pos = prefix + step  # [3]: rows sit at different positions
            token = seqs[torch.arange(3), pos][:, None]
            logits = model(token, positions=pos[:, None], cache=cache, kv_len=int(pos.max()) + 1, logit_index=torch.zeros(3, dtype=torch.long))
            torch.testing.assert_close(logits, full[torch.arange(3), pos], rtol=1e-5, atol=1e-5)
