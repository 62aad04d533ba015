"""A plain PyTorch GPT-2 (nanoGPT-style) over a Hugging Face GPT-2 state dict: the eager peer."""


import torch
import torch.nn.functional as F


class TorchGPT(torch.nn.Module):
    """GPT-2 forward in plain PyTorch ops, reading HF GPT2LMHeadModel tensors (Conv1D: [in, out])."""

    def __init__(self, state, n_layer, n_head, eps=1e-5):
        super().__init__()
        self.w = {k.removeprefix("transformer."): v for k, v in state.items()}
        self.n_layer, self.n_head, self.eps = n_layer, n_head, eps

    def _ln(self, x, name):
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x, name):
        return torch.addmm(self.w[f"{name}.bias"], x.flatten(0, -2), self.w[f"{name}.weight"]).view(*x.shape[:-1], -1)

    def forward(self, tokens):
        batch, seq = tokens.shape
        x = self.w["wte.weight"][tokens] + self.w["wpe.weight"][:seq]
        for i in range(self.n_layer):
            h = self._ln(x, f"h.{i}.ln_1")
            q, k, v = self._linear(h, f"h.{i}.attn.c_attn").split(x.shape[-1], dim=-1)
            q, k, v = (t.view(batch, seq, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, seq, -1)
            x = x + self._linear(a, f"h.{i}.attn.c_proj")
            h = self._ln(x, f"h.{i}.ln_2")
            x = x + self._linear(F.gelu(self._linear(h, f"h.{i}.mlp.c_fc"), approximate="tanh"), f"h.{i}.mlp.c_proj")
        return self._ln(x, "ln_f") @ self.w["wte.weight"].t()


