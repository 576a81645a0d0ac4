"""Token-by-token decoders for the HF engine: a generic one (the model's own forward with its
KV cache) and a lean one for Llama-architecture models.

Why our own loop instead of `generate`: it runs inside the caller's generator (no thread),
checks cancellation between tokens, and drops per-token overhead. Measured on 2 CPU cores with
SmolLM2-135M (bench/engine_speed.py): `generate` fp32 16 tok/s; bf16 weights with oneDNN off
for the one-row matmuls (ATen's bf16 GEMV reads half the bytes) 45-48 tok/s; plus the lean step
below 56 tok/s. torch.compile of that step reaches 73 tok/s, but a first compile takes ~90 s on
two cores and, run in a background thread, holds the GIL so much that replies crawl meanwhile
(2.5 tok/s), so the engine stays eager; the bench measures the compiled lever."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator, Optional

PREFILL_CHUNK = 512  # prompt tokens per forward: bounds memory and lets cancel act between chunks
ChunkHook = Callable[[int, int], None]  # (start, end) of the prompt chunk about to run


@contextlib.contextmanager
def _onednn_off() -> Iterator[None]:
    import torch

    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        # Back to torch's default rather than "the previous value": with two threads
        # interleaving steps, restoring "previous" can leave oneDNN off for good (slow prompts);
        # this way a race only costs one step its fast path.
        torch.backends.mkldnn.enabled = True


def decode_flags(model: Any) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for one decode step: the kernel choices that are fastest for one row."""
    import torch

    if model.device.type == "cpu" and model.dtype in (torch.bfloat16, torch.float16):
        # oneDNN's bf16 matmul is ~2x slower than ATen's GEMV for a single row. The switch is
        # process-wide, so it is held for one step only (and prompt passes keep oneDNN, which
        # is faster for many rows); other CPU work at that instant just takes the ATen path.
        return _onednn_off
    if model.device.type == "cuda":
        # cuDNN attention builds an execution plan for every new key length, i.e. every
        # decode step: ~90 ms of CPU per token on an H200 host. The other kernels need none.
        return _attention_without_cudnn
    return contextlib.nullcontext


def _attention_without_cudnn() -> contextlib.AbstractContextManager:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def prefill_flags(model: Any) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for a prompt pass: on a GPU, attention without cuDNN's kernel, which builds an
    execution plan for every new prompt length (~0.1 s of a first token on an H200: every real prompt is
    a new length); flash / memory-efficient attention need none. Elsewhere torch's defaults."""
    return _attention_without_cudnn if model.device.type == "cuda" else contextlib.nullcontext


class HFForwardDecoder:
    """Any causal LM: calls the model's forward with its own cache object, one token per step."""

    name = "hf-forward"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.device
        params = inspect.signature(model.forward).parameters
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._flags = decode_flags(model)
        self.past: Any = None
        self.n = 0

    def start(self, capacity: int) -> None:
        """Forget the previous sequence."""
        self.past, self.n = None, 0

    def _forward(self, ids: list[int], embeds: Any = None) -> Any:
        import torch

        # No attention_mask: one unpadded sequence needs none, and building the 4-D mask every
        # step tripled the step time on a GPU host (90 vs 30 ms).
        if embeds is None:
            inputs = {"input_ids": torch.tensor([ids], device=self.device)}
        else:
            inputs = {"inputs_embeds": embeds}
        out = self.model(**inputs, past_key_values=self.past, use_cache=True, **self._keep)
        self.past = out.past_key_values
        self.n += len(ids)
        return out.logits[0, -1].float()

    def prefill(self, ids: list[int], cancelled: Callable[[], bool], embeds: Any = None,
                on_chunk: Optional[ChunkHook] = None) -> Optional[Any]:
        """Run the prompt in chunks; the last position's fp32 logits, or None if cancelled.

        `embeds` [1, len(ids), hidden] replaces the token embeddings (images spliced in);
        `on_chunk(start, end)` runs before each chunk (image-only adapters set their mask)."""
        logits = None
        for i in range(0, len(ids), PREFILL_CHUNK):
            if cancelled():
                return None
            end = min(i + PREFILL_CHUNK, len(ids))
            if on_chunk:
                on_chunk(i, end)
            with prefill_flags(self.model)():
                logits = self._forward(ids[i:end], None if embeds is None else embeds[:, i:end])
        return logits

    def step(self, token: int) -> Any:
        """Feed one token; fp32 logits of the next."""
        with self._flags():
            return self._forward([token])

    def release(self) -> None:
        """Drop the KV cache."""
        self.past = None


class _BufferCache:
    """KV cache in preallocated per-layer buffers; duck-types the `update` HF attention calls."""

    def __init__(self, layers: int, kv_heads: int, capacity: int, head_dim: int, dtype: Any, device: Any) -> None:
        import torch

        shape = (kv_heads, capacity, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.n = 0

    def update(self, key: Any, value: Any, layer: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Store [1, kv_heads, q, dim] keys/values at the current position; return all so far."""
        end = self.n + key.shape[2]
        self.k[layer][:, self.n : end] = key[0]
        self.v[layer][:, self.n : end] = value[0]
        return self.k[layer][None, :, :end], self.v[layer][None, :, :end]


def fast_llama_supported(model: Any) -> bool:
    """True for a plain LlamaForCausalLM on one device, the case the lean decoder reproduces."""
    cfg = model.config
    devices = set(str(d) for d in (getattr(model, "hf_device_map", None) or {}).values())
    return (
        type(model).__name__ == "LlamaForCausalLM"
        and len(devices) <= 1
        and getattr(cfg, "hidden_act", "") == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "pretraining_tp", 1) == 1
        and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager")
    )


def _fuse(linears: list[Any]) -> Any:
    """One weight for several bias-free linears; the modules keep views into it (no extra memory)."""
    import torch

    fused = torch.cat([m.weight.data for m in linears]).contiguous()
    start = 0
    for m in linears:
        rows = m.weight.shape[0]
        m.weight = torch.nn.Parameter(fused[start : start + rows], requires_grad=False)
        start += rows
    return fused


class FastLlamaDecoder:
    """Llama on one device: the prompt through HF's own layers, then a lean one-token step.

    The step does what LlamaDecoderLayer does, with q/k/v and gate/up fused into one matmul
    each and single-query attention in fp32, skipping per-call mask and cache machinery that
    costs more than the math at this size.
    """

    name = "fast-llama"

    def __init__(self, model: Any) -> None:
        cfg = model.config
        self.model = model
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.inter = cfg.intermediate_size
        self._flags = decode_flags(model)
        self.layers = []
        for layer in model.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = _fuse([att.q_proj, att.k_proj, att.v_proj])
            gate_up = _fuse([mlp.gate_proj, mlp.up_proj])
            self.layers.append((layer.input_layernorm, qkv, att.o_proj.weight, att.scaling,
                                layer.post_attention_layernorm, gate_up, mlp.down_proj.weight))
        self.cache: Optional[_BufferCache] = None

    def start(self, capacity: int) -> None:
        """Allocate the KV buffers for `capacity` tokens."""
        self.cache = _BufferCache(len(self.layers), self.kv_heads, capacity, self.head_dim,
                                  self.model.dtype, self.model.device)

    def prefill(self, ids: list[int], cancelled: Callable[[], bool], embeds: Any = None,
                on_chunk: Optional[ChunkHook] = None) -> Optional[Any]:
        """The prompt through the model's own decoder layers, in chunks; last fp32 logits or None.

        `embeds` and `on_chunk` as in HFForwardDecoder.prefill."""
        import torch

        inner, cache, hidden, dev = self.model.model, self.cache, None, self.model.device
        for i in range(0, len(ids), PREFILL_CHUNK):
            if cancelled():
                return None
            end = min(i + PREFILL_CHUNK, len(ids))
            if on_chunk:
                on_chunk(i, end)
            q = end - i
            pos = torch.arange(cache.n, cache.n + q, device=dev).unsqueeze(0)
            # The first chunk is plain causal; later ones also see everything cached before them.
            seen = torch.arange(cache.n + q, device=dev)
            mask = None if cache.n == 0 else (seen[None, :] <= pos[0][:, None])[None, None]
            if embeds is None:
                hidden = inner.embed_tokens(torch.tensor([ids[i:end]], device=dev))
            else:
                hidden = embeds[:, i:end].to(dev)
            rope = inner.rotary_emb(hidden, position_ids=pos)
            with prefill_flags(self.model)():
                for layer in inner.layers:
                    hidden = layer(hidden, attention_mask=mask, position_ids=pos, past_key_values=cache,
                                   use_cache=True, position_embeddings=rope)
            cache.n += q
        return self.model.lm_head(inner.norm(hidden[:, -1:]))[0, -1].float()

    def step(self, token: int) -> Any:
        """One token through the lean path; fp32 logits of the next."""
        import torch

        cache, x = self.cache, torch.tensor([[token]], device=self.model.device)
        with self._flags():
            logits = self.forward_one(x, cache.n, cache.k, cache.v)
        cache.n += 1
        return logits

    def forward_one(self, token: Any, n: int, kbuf: list, vbuf: list) -> Any:
        """Token [1, 1] at position n → fp32 logits; a pure function of its arguments, so
        torch.compile(dynamic=True) can trace it once for every n (see bench/engine_speed.py)."""
        import torch
        import torch.nn.functional as F

        inner = self.model.model
        nh, nkv, hd = self.heads, self.kv_heads, self.head_dim
        h = inner.embed_tokens(token)
        position = torch.full((1, 1), n, dtype=torch.long, device=h.device)
        cos, sin = inner.rotary_emb(h, position_ids=position)
        cos, sin, half = cos.view(1, 1, hd), sin.view(1, 1, hd), hd // 2
        for i, (norm1, qkv_w, o_w, scale, norm2, gu_w, down_w) in enumerate(self.layers):
            qkv = F.linear(norm1(h), qkv_w).view(nh + 2 * nkv, 1, hd)
            qk = qkv[: nh + nkv]  # rotate q and k heads together: same math, half the ops
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            # Slices, not kbuf[i][:, n]: an int index would make torch.compile specialise on n.
            kbuf[i][:, n : n + 1] = qk[nh:]
            vbuf[i][:, n : n + 1] = qkv[nh + nkv :]
            keys, values = kbuf[i][:, : n + 1], vbuf[i][:, : n + 1]
            # Single-query attention as two small matmuls in fp32: the fused CPU SDPA kernel is
            # ~4x slower for one query row at 2k context. Query heads h*g..h*g+g-1 share kv head h.
            q = qk[:nh].view(nkv, nh // nkv, hd).float()
            probs = torch.softmax(torch.matmul(q, keys.float().transpose(1, 2)) * scale, dim=-1)
            att = torch.matmul(probs, values.float()).to(h.dtype).view(1, 1, nh * hd)
            h = h + F.linear(att, o_w)
            gate_up = F.linear(norm2(h), gu_w)
            h = h + F.linear(F.silu(gate_up[..., : self.inter]) * gate_up[..., self.inter :], down_w)
        return self.model.lm_head(inner.norm(h))[0, -1].float()

    def release(self) -> None:
        """Drop the KV buffers."""
        self.cache = None


def make_decoder(model: Any, allow_fast: bool = True) -> Any:
    """The lean Llama decoder (same math as HF; fp32 tokens identical on CPU), else the generic one."""
    if allow_fast and fast_llama_supported(model):
        return FastLlamaDecoder(model)
    return HFForwardDecoder(model)

