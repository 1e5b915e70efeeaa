"""Plain-PyTorch GPT-2 and Llama causal language models, the independent reference for Athanor.

Written from the published architecture descriptions, without the transformers library. Parameter names
and layouts are exactly those Hugging Face's save_pretrained writes today, so that a state dict from this
module is a valid HF checkpoint and vice versa:

GPT-2 (GPT2LMHeadModel)
  transformer.wte.weight (V, C)          token embedding; the output head is tied to it (no lm_head tensor)
  transformer.wpe.weight (P, C)          learned positions
  transformer.h.{i}.ln_1.{weight,bias} (C)
  transformer.h.{i}.attn.c_attn.weight (C, 3C), .bias (3C)   Conv1D: y = x @ W + b; output split q | k | v
  transformer.h.{i}.attn.c_proj.weight (C, C), .bias (C)
  transformer.h.{i}.ln_2.{weight,bias} (C)
  transformer.h.{i}.mlp.c_fc.weight (C, I), .bias (I)
  transformer.h.{i}.mlp.c_proj.weight (I, C), .bias (C)
  transformer.ln_f.{weight,bias} (C)
  LayerNorm (biased variance, eps inside the sqrt), GELU tanh approximation ("gelu_new").

Llama (LlamaForCausalLM)
  model.embed_tokens.weight (V, C)
  model.layers.{i}.input_layernorm.weight (C)
  model.layers.{i}.self_attn.{q_proj (C, C), k_proj (KV*D, C), v_proj (KV*D, C), o_proj (C, C)}.weight
                                         nn.Linear without bias: y = x @ W^T
  model.layers.{i}.post_attention_layernorm.weight (C)
  model.layers.{i}.mlp.{gate_proj (I, C), up_proj (I, C), down_proj (C, I)}.weight
  model.norm.weight (C)
  lm_head.weight (V, C)                  absent when tied to the embedding
  RMSNorm in float32: y = x * rsqrt(mean(x^2) + eps) * w; SwiGLU MLP down(silu(gate(x)) * up(x));
  RoPE in the "rotate_half" convention (pairs (i, i + D/2)); grouped-query attention, query head h uses
  key/value head h // (H / KV).

Attention heads are split as (B, T, H, D) -> (B, H, T, D); scores are scaled by 1/sqrt(D), causally masked,
softmaxed in float32. forward(ids, targets) returns (logits, loss), the loss being the mean cross-entropy
over targets != -100 (HF's ignore index); targets are already aligned with the inputs (llm.c style: the
caller shifts them), unlike HF's labels.

Two attention paths: the explicit softmax path (the default; used for the fixtures) and
F.scaled_dot_product_attention (use_sdpa=True; for the benchmarks, where the installed PyTorch has it).
A KV-cache path (new_cache / forward_cached) serves the decode benchmark.

Training helpers: init_weights (from-scratch init), param_groups / make_adamw (decay only on tensors with
dim >= 2), lr_at (warmup + cosine or constant), and clip_grad_norm_ is PyTorch's own.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a GPT-2 or Llama model. For GPT-2 kv_heads must equal heads and rope_theta is unused."""
    family: str            # "gpt2" or "llama"
    vocab_size: int
    max_seq_len: int       # n_positions / max_position_embeddings
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tied: bool = True

    def __post_init__(self):
        if self.family not in ("gpt2", "llama"):
            raise ValueError(f"family must be gpt2 or llama, got {self.family!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not divisible by kv_heads {self.kv_heads}")
        if self.family == "gpt2" and self.kv_heads != self.heads:
            raise ValueError("GPT-2 has no grouped-query attention")
        if self.family == "llama" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")

    @property
    def head_dim(self):
        return self.hidden // self.heads

    def to_dict(self):
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# layers


class Conv1D(nn.Module):
    """GPT-2's linear layer with the weight stored (in, out): y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out).normal_(0.0, 0.02))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        h = _up(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def _up(x):
    """Upcast half precisions to float32 (float32 and float64 stay as they are)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def gelu_tanh(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rope_cos_sin(head_dim, theta, positions, device=None):
    """cos, sin of shape (T, D) for integer positions (1-D tensor), computed in float32 like HF:
    inv_freq[i] = 1 / theta^(2i/D) for i < D/2, angle = pos * inv_freq, both halves repeated cat([f, f])."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x (B, H, T, D); cos, sin (T, D)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def attention(q, k, v, use_sdpa, q_start=0):
    """q (B, H, Tq, D); k, v (B, H, Tk, D) (kv heads already expanded). Query i sits at position q_start + i
    and sees keys 0 .. q_start + i. Returns (B, H, Tq, D)."""
    tq, tk = q.shape[2], k.shape[2]
    if use_sdpa:
        if tq == 1:
            return F.scaled_dot_product_attention(q, k, v)
        if q_start == 0 and tq == tk:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        mask = _causal_mask(tq, tk, q_start, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scale = 1.0 / math.sqrt(q.shape[-1])
    att = torch.matmul(q, k.transpose(-2, -1)) * scale
    if tq > 1 or q_start + tq < tk:
        att = att.masked_fill(~_causal_mask(tq, tk, q_start, q.device), float("-inf"))
    att = torch.softmax(_up(att), dim=-1).to(v.dtype)
    return torch.matmul(att, v)


def _causal_mask(tq, tk, q_start, device):
    qi = torch.arange(tq, device=device)[:, None] + q_start
    kj = torch.arange(tk, device=device)[None, :]
    return kj <= qi  # True = may attend


# ----------------------------------------------------------------------------------------------------------
# GPT-2


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.c_attn = Conv1D(cfg.hidden, 3 * cfg.hidden)
        self.c_proj = Conv1D(cfg.hidden, cfg.hidden)

    def forward(self, x, use_sdpa, cache=None, start=0):
        b, t, c = x.shape
        h, d = self.cfg.heads, self.cfg.head_dim
        q, k, v = self.c_attn(x).split(c, dim=-1)
        q = q.view(b, t, h, d).transpose(1, 2)
        k = k.view(b, t, h, d).transpose(1, 2)
        v = v.view(b, t, h, d).transpose(1, 2)
        if cache is not None:
            kc, vc = cache
            kc[:, :, start:start + t] = k
            vc[:, :, start:start + t] = v
            k, v = kc[:, :, :start + t], vc[:, :, :start + t]
        y = attention(q, k, v, use_sdpa, start)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class GPT2MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Conv1D(cfg.hidden, cfg.intermediate)
        self.c_proj = Conv1D(cfg.intermediate, cfg.hidden)

    def forward(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x, use_sdpa, cache=None, start=0):
        x = x + self.attn(self.ln_1(x), use_sdpa, cache, start)
        return x + self.mlp(self.ln_2(x))


class GPT2Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.wpe = nn.Embedding(cfg.max_seq_len, cfg.hidden)
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)


# ----------------------------------------------------------------------------------------------------------
# Llama


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, kv = cfg.hidden, cfg.kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(c, c, bias=False)
        self.k_proj = nn.Linear(c, kv, bias=False)
        self.v_proj = nn.Linear(c, kv, bias=False)
        self.o_proj = nn.Linear(c, c, bias=False)

    def forward(self, x, cos, sin, use_sdpa, cache=None, start=0):
        b, t, c = x.shape
        h, kvh, d = self.cfg.heads, self.cfg.kv_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, kvh, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, kvh, d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            kc, vc = cache
            kc[:, :, start:start + t] = k
            vc[:, :, start:start + t] = v
            k, v = kc[:, :, :start + t], vc[:, :, :start + t]
        if kvh != h:  # query head j uses kv head j // (h / kvh)
            k = k.repeat_interleave(h // kvh, dim=1)
            v = v.repeat_interleave(h // kvh, dim=1)
        y = attention(q, k, v, use_sdpa, start)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, c))


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.mlp = LlamaMLP(cfg)

    def forward(self, x, cos, sin, use_sdpa, cache=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, use_sdpa, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.layers = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)


# ----------------------------------------------------------------------------------------------------------
# the causal LM


class CausalLM(nn.Module):
    """GPT2LMHeadModel or LlamaForCausalLM, by cfg.family; named_parameters() yields the HF names."""

    def __init__(self, cfg, use_sdpa=False):
        super().__init__()
        self.cfg = cfg
        if use_sdpa and not has_sdpa():
            raise RuntimeError(f"this PyTorch ({torch.__version__}) has no F.scaled_dot_product_attention")
        self.use_sdpa = use_sdpa
        if cfg.family == "gpt2":
            self.transformer = GPT2Transformer(cfg)
        else:
            self.model = LlamaModel(cfg)
        if not cfg.tied:
            self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)

    # -- the pieces shared by the full and the cached forward

    def _embedding(self):
        return self.transformer.wte if self.cfg.family == "gpt2" else self.model.embed_tokens

    def _head(self, x):
        w = self._embedding().weight if self.cfg.tied else self.lm_head.weight
        return F.linear(x, w)

    def _trunk(self, ids, cache=None, start=0):
        t = ids.shape[1]
        if start + t > self.cfg.max_seq_len:
            raise ValueError(f"positions {start}..{start + t - 1} exceed max_seq_len {self.cfg.max_seq_len}")
        pos = torch.arange(start, start + t, device=ids.device)
        if self.cfg.family == "gpt2":
            tr = self.transformer
            x = tr.wte(ids) + tr.wpe(pos)[None]
            for i, blk in enumerate(tr.h):
                x = blk(x, self.use_sdpa, None if cache is None else cache[i], start)
            return tr.ln_f(x)
        m = self.model
        cos, sin = rope_cos_sin(self.cfg.head_dim, self.cfg.rope_theta, pos, ids.device)
        x = m.embed_tokens(ids)
        for i, blk in enumerate(m.layers):
            x = blk(x, cos, sin, self.use_sdpa, None if cache is None else cache[i], start)
        return m.norm(x)

    def forward(self, ids, targets=None):
        """ids (B, T) int64; targets (B, T) int64 aligned with ids, -100 = ignored.
        Returns (logits (B, T, V), loss or None); the loss is float32 even under autocast."""
        logits = self._head(self._trunk(ids))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(_up(logits).view(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return logits, loss

    # -- KV cache (decode benchmark)

    def new_cache(self, batch, max_len, dtype=None, device=None):
        """One preallocated (k, v) pair per layer, each (B, KV, max_len, D)."""
        p = next(self.parameters())
        dtype, device = dtype or p.dtype, device or p.device
        shape = (batch, self.cfg.kv_heads, max_len, self.cfg.head_dim)
        return [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                for _ in range(self.cfg.layers)]

    def forward_cached(self, ids, cache, start):
        """Runs ids (B, T) at positions start.., appending their keys/values to cache; returns logits (B, T, V)."""
        return self._head(self._trunk(ids, cache, start))

    @torch.no_grad()
    def generate_greedy(self, prompt, new_tokens, cache=None):
        """Greedy decoding with a KV cache: prompt (B, P) -> (B, new_tokens) generated ids."""
        b, p = prompt.shape
        if cache is None:
            cache = self.new_cache(b, p + new_tokens)
        logits = self.forward_cached(prompt, cache, 0)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out = [nxt]
        for i in range(1, new_tokens):
            logits = self.forward_cached(nxt, cache, p + i - 1)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
        return torch.cat(out, dim=1)

    # -- bookkeeping

    def hf_state_dict(self):
        """name -> tensor with HF names, in a fixed order (the tied head has no entry)."""
        return {n: p for n, p in self.named_parameters()}

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def num_matmul_params(self):
        """Parameters that take part in a matmul per token: all except position and input-embedding tables,
        counting the output head once (the tied embedding then counts as the head)."""
        n = self.num_params()
        if self.cfg.family == "gpt2":
            n -= self.transformer.wpe.weight.numel()
        if not self.cfg.tied:
            n -= self._embedding().weight.numel()
        return n


# ----------------------------------------------------------------------------------------------------------
# initialization and training helpers

RESIDUAL_PROJECTIONS = ("attn.c_proj.weight", "mlp.c_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight")


def is_norm_weight(name):
    return any(s in name for s in ("ln_1.", "ln_2.", "ln_f.", "layernorm.", "model.norm."))


@torch.no_grad()
def init_weights(model, generator=None):
    """From-scratch init: normal(0, 0.02) for weights and embeddings, 0.02/sqrt(2 * layers) for the residual
    projections, zeros for biases, ones for norm weights. Parameters are visited in named_parameters order."""
    std_res = 0.02 / math.sqrt(2 * model.cfg.layers)
    for name, p in model.named_parameters():
        if is_norm_weight(name) and name.endswith(".weight"):
            p.fill_(1.0)
        elif name.endswith(".bias"):
            p.zero_()
        else:
            std = std_res if name.endswith(RESIDUAL_PROJECTIONS) else 0.02
            p.normal_(0.0, std, generator=generator)


def param_groups(model, weight_decay):
    """Two AdamW groups: tensors with dim >= 2 decayed, the rest (biases, norm weights) not."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_adamw(model, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, impl="default"):
    """torch.optim.AdamW over param_groups; impl: "default" (for-loop, the fixture path), "foreach" or
    "fused" (falls back to foreach where this PyTorch or device lacks fused). Returns (optimizer, impl used)."""
    groups = param_groups(model, weight_decay)
    if impl == "fused":
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True), "fused"
        except (TypeError, RuntimeError, ValueError):
            impl = "foreach"
    if impl == "foreach":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True), "foreach"
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False), "default"


def lr_at(step, lr, min_lr, warmup, total, schedule="cosine"):
    """Learning rate of 0-based step `step` of `total`: constant, or linear warmup over `warmup` steps
    (lr * (step + 1) / warmup) then cosine from lr down to min_lr."""
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"schedule must be constant or cosine, got {schedule!r}")
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    for g in optimizer.param_groups:
        g["lr"] = lr


def sequential_batch(tokens, step, batch, seq):
    """llm.c's sequential loader without wrap-around: batch `step` = tokens[s*B*T : s*B*T + B*T + 1],
    inputs the first B*T, targets the same shifted by one, both (B, T)."""
    n = batch * seq
    start = step * n
    chunk = tokens[start:start + n + 1]
    if chunk.numel() != n + 1:
        raise ValueError(f"step {step} needs tokens up to {start + n + 1}, stream has {tokens.numel()}")
    return chunk[:-1].view(batch, seq), chunk[1:].view(batch, seq)
