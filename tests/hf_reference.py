"""Build small Hugging Face models with fully random weights, save them as checkpoints."""

import torch

# family -> (transformers class names, config kwargs) for small configs with odd sizes
SMALL_CONFIGS = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=50257, n_positions=64, n_embd=48, n_layer=2, n_head=3)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(vocab_size=1000, hidden_size=192, intermediate_size=320, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                   tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(vocab_size=1000, hidden_size=192, intermediate_size=320, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                   tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(vocab_size=1000, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                   num_attention_heads=6, num_key_value_heads=2, head_dim=32, max_position_embeddings=128,
                   tie_word_embeddings=False)),
}


def build_model(family, seed=0):
    """An eval-mode fp32 HF model of `family` whose every parameter is random (norms around 1)."""
    import transformers
    config_name, model_name, kwargs = SMALL_CONFIGS[family]
    config = getattr(transformers, config_name)(**kwargs)
    if family == "gpt2":
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or ".ln_" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param) if name.endswith("weight") else 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.05 * torch.randn_like(param))
    return model


def save_checkpoint(model, directory):
    """Write config.json + model.safetensors (HF tensor names) to `directory`."""
    model.save_pretrained(directory, safe_serialization=True)
    return directory
