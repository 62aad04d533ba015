"""Plain PyTorch GPT-2 and Llama-family (Llama, Qwen2, Qwen3) decoders over Hugging Face state
dicts: the decode peer.

gpt-fast style: a static preallocated KV cache, K/V written at the step's position with
index_copy_, attention over the whole cache masked by position, greedy argmax on the device, and
one decode step captured in one CUDA graph whose replays feed each argmax back as the next input
(no host sync per token). Without CUDA the same step runs eagerly (for CPU checks).
"""

import time

import torch
import torch.nn.functional as F


class KVCache:
    """Keys and values of every layer, [layers, batch, kv heads, max seq, head dim], preallocated."""

    def __init__(self, layers, batch, kv_heads, max_seq, head_dim, dtype, device):
        self.keys = torch.zeros(layers, batch, kv_heads, max_seq, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.slots = torch.arange(max_seq, device=device)

    def attend(self, layer, positions, q, k, v):
        """Write k, v [B, KV, S, D] at `positions` [S], then attend q [B, H, S, D] to every slot at or before each."""
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(2, positions, k)
        values.index_copy_(2, positions, v)
        visible = self.slots <= positions[:, None]
        # enable_gqa only where needed: it rules out some fused SDPA kernels.
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=visible, enable_gqa=q.shape[1] != k.shape[1])


class GPT2Decoder:
    """GPT-2 over HF GPT2LMHeadModel tensors (Conv1D weights are [in, out]; c_attn is already fused QKV)."""

    def __init__(self, state, config, batch, max_seq):
        self.w = {k.removeprefix("transformer."): v for k, v in state.items()}
        self.n_layer, self.n_head, self.eps = config.n_layer, config.n_head, config.layer_norm_epsilon
        embedding = self.w["wte.weight"]
        self.cache = KVCache(self.n_layer, batch, self.n_head, max_seq, config.n_embd // self.n_head,
                             embedding.dtype, embedding.device)

    def _ln(self, x, name):
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x, name):
        return torch.addmm(self.w[f"{name}.bias"], x.flatten(0, -2), self.w[f"{name}.weight"]).view(*x.shape[:-1], -1)

    def __call__(self, tokens, positions):
        """Logits [B, V] of the last of `tokens` [B, S] at `positions` [S]; fills the cache at those positions."""
        batch, seq = tokens.shape
        x = self.w["wte.weight"][tokens] + self.w["wpe.weight"][positions]
        for i in range(self.n_layer):
            qkv = self._linear(self._ln(x, f"h.{i}.ln_1"), f"h.{i}.attn.c_attn")
            q, k, v = qkv.view(batch, seq, 3, self.n_head, -1).permute(2, 0, 3, 1, 4).unbind(0)
            a = self.cache.attend(i, positions, q, k, v).transpose(1, 2).reshape(batch, seq, -1)
            x = x + self._linear(a, f"h.{i}.attn.c_proj")
            h = self._ln(x, f"h.{i}.ln_2")
            x = x + self._linear(F.gelu(self._linear(h, f"h.{i}.mlp.c_fc"), approximate="tanh"), f"h.{i}.mlp.c_proj")
        return self._ln(x[:, -1], "ln_f") @ self.w["wte.weight"].t()


class LlamaFamilyDecoder:
    """Llama, Qwen2 (q/k/v biases) and Qwen3 (q/k RMSNorm) over HF *ForCausalLM tensors ([out, in]);
    q/k/v and gate/up are concatenated once here. `inv_freq` is the HF model's rotary frequencies
    (llama3 scaling included); without it, plain RoPE from the config's theta."""

    def __init__(self, state, config, batch, max_seq, inv_freq=None):
        self.w = {k.removeprefix("model."): v for k, v in state.items()}
        self.n_layer, self.eps = config.num_hidden_layers, config.rms_norm_eps
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.qk_norm = "layers.0.self_attn.q_norm.weight" in self.w
        for i in range(self.n_layer):
            prefix = f"layers.{i}"
            self.w[f"{prefix}.qkv_weight"] = torch.cat([self.w[f"{prefix}.self_attn.{p}_proj.weight"]
                                                        for p in ("q", "k", "v")])
            if f"{prefix}.self_attn.q_proj.bias" in self.w:
                self.w[f"{prefix}.qkv_bias"] = torch.cat([self.w[f"{prefix}.self_attn.{p}_proj.bias"]
                                                          for p in ("q", "k", "v")])
            self.w[f"{prefix}.gate_up_weight"] = torch.cat([self.w[f"{prefix}.mlp.{p}_proj.weight"]
                                                            for p in ("gate", "up")])
        embedding = self.w["embed_tokens.weight"]
        self.lm_head = embedding if config.tie_word_embeddings else self.w["lm_head.weight"]
        # transformers 5 keeps theta in rope_parameters, 4 in rope_theta
        if inv_freq is None:
            theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or config.rope_theta
            inv_freq = 1.0 / theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        inv_freq = inv_freq.float().cpu()
        angles = torch.outer(torch.arange(max_seq, dtype=torch.float32), inv_freq).repeat(1, 2).to(embedding.device)
        self.cos, self.sin = angles.cos().to(embedding.dtype), angles.sin().to(embedding.dtype)
        self.cache = KVCache(self.n_layer, batch, self.kv_heads, max_seq, self.head_dim, embedding.dtype,
                             embedding.device)

    def _rms(self, x, name):
        # HF's order: normalize in fp32, round to the activation dtype, then scale.
        x32 = x.float()
        return self.w[name] * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def __call__(self, tokens, positions):
        """Logits [B, V] of the last of `tokens` [B, S] at `positions` [S]; fills the cache at those positions."""
        batch, seq = tokens.shape
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        cos, sin = self.cos[positions], self.sin[positions]
        x = self.w["embed_tokens.weight"][tokens]
        for i in range(self.n_layer):
            prefix = f"layers.{i}"
            h = self._rms(x, f"{prefix}.input_layernorm.weight")
            qkv = F.linear(h, self.w[f"{prefix}.qkv_weight"], self.w.get(f"{prefix}.qkv_bias"))
            q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
            q, k = q.view(batch, seq, self.heads, -1), k.view(batch, seq, self.kv_heads, -1)
            if self.qk_norm:
                q, k = (self._rms(q, f"{prefix}.self_attn.q_norm.weight"),
                        self._rms(k, f"{prefix}.self_attn.k_norm.weight"))
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            v = v.view(batch, seq, self.kv_heads, -1).transpose(1, 2)
            a = self.cache.attend(i, positions, self._rope(q, cos, sin), self._rope(k, cos, sin), v)
            x = x + F.linear(a.transpose(1, 2).reshape(batch, seq, -1), self.w[f"{prefix}.self_attn.o_proj.weight"])
            h = self._rms(x, f"{prefix}.post_attention_layernorm.weight")
            gate, up = F.linear(h, self.w[f"{prefix}.gate_up_weight"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, self.w[f"{prefix}.mlp.down_proj.weight"])
        return self._rms(x[:, -1], "norm.weight") @ self.lm_head.t()


DECODERS = {"gpt2": GPT2Decoder, "llama": LlamaFamilyDecoder, "qwen2": LlamaFamilyDecoder,
            "qwen3": LlamaFamilyDecoder}


def greedy_decode(decoder, prompt, new_tokens):
    """Greedy-generate `new_tokens` per row of `prompt` [B, S]; returns (tokens [B, new_tokens], decode seconds).

    The prompt is prefilled eagerly (untimed, it also picks the first token); the timed part is the
    new_tokens - 1 decode steps, replays of one CUDA graph on a GPU, eager steps on the CPU.
    """
    batch, prompt_len = prompt.shape
    device = prompt.device
    history = torch.zeros(batch, decoder.cache.slots.numel(), dtype=torch.long, device=device)
    history[:, :prompt_len] = prompt
    token = decoder(prompt, torch.arange(prompt_len, device=device)).argmax(-1, keepdim=True)
    position = torch.tensor([prompt_len], device=device)
    history[:, prompt_len:prompt_len + 1] = token

    def step():
        chosen = decoder(token, position).argmax(-1, keepdim=True)
        position.add_(1)
        token.copy_(chosen)
        history.index_copy_(1, position, chosen)

    run = step
    if device.type == "cuda":
        run = _capture(step, [token, position])
    started, ended = _Clock(device), _Clock(device)
    started.record()
    for _ in range(new_tokens - 1):
        run()
    ended.record()
    return history[:, prompt_len:prompt_len + new_tokens].cpu(), started.seconds_until(ended)


def _capture(step, state):
    """A CUDA graph of `step`; `state` tensors that warm-up and a trial replay advance are restored after."""
    saved = [tensor.clone() for tensor in state]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # capture needs warmed-up kernels and allocator, off the default stream
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    for tensor, value in zip(state, saved):
        tensor.copy_(value)
    return graph.replay


class _Clock:
    """CUDA events on a GPU, perf_counter on the CPU, behind one interface."""

    def __init__(self, device):
        self.event = torch.cuda.Event(enable_timing=True) if device.type == "cuda" else None
        self.time = None

    def record(self):
        if self.event is not None:
            self.event.record()
        else:
            self.time = time.perf_counter()

    def seconds_until(self, other):
        if self.event is not None:
            other.event.synchronize()
            return self.event.elapsed_time(other.event) / 1e3
        return other.time - self.time

