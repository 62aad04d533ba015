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


# int4 groups (32 K) must divide every width: GPT-2's 48 is widened for quantized parity plans
QUANT_SIZES = {"gpt2": {"n_embd": 64, "n_head": 4}}
QUANT_GROUP = 32


def build_model(family, seed=0, **overrides):
    """An eval-mode fp32 HF model of `family` whose every parameter is random (norms around 1)."""
    import transformers
    config_name, model_name, kwargs = SMALL_CONFIGS[family]
    config = getattr(transformers, config_name)(**{**kwargs, **overrides})
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


def fake_quantize(model, mode, group_size=128):
    """`model` with each linear weight (GPT-2's Conv1D too, and the LM head, untied from the
    embedding) replaced by its dequantized value, as `cgc compile --quant mode` stores it
    (float32 scales; the LM head takes int8 in int4 mode). Returns the model."""
    import transformers
    from compiler.quantize import quantize
    from runtime.quant import dequantize

    def fake(weight, layout, op_mode):
        group = group_size if op_mode == "int4" else None
        parts = quantize(op_mode, layout, weight.detach().numpy(), group)
        values = dequantize(op_mode, layout, parts["codes"], parts["scale"], parts.get("min"), group)
        return torch.nn.Parameter(torch.from_numpy(values))

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name != "lm_head":
                module.weight = fake(module.weight, "out_in", mode)  # [out, in]
            elif isinstance(module, transformers.pytorch_utils.Conv1D):
                module.weight = fake(module.weight, "in_out", mode)  # [in, out]
        model.lm_head.weight = fake(model.lm_head.weight, "out_in", "int8" if mode == "int4" else mode)
    return model
