"""The lean Llama decode step captured as CUDA graphs: one replay per token instead of ~300 launches.

Why: at the 1.8B shape on an H200 the eager lean step spends most of each token launching kernels
(79 tok/s, where the weights' copy time allows ~1 100). A graph needs fixed shapes and addresses, so
the step reads its token and position from device tensors, writes K/V at that position with
index_copy_, and attends over a fixed-length prefix of one preallocated cache with the positions
after the current one masked out. One graph per length bucket (256, 512, … up to the cap) keeps the
attention work near the real context length. Longer sequences, and any failure to capture, run the
eager lean step (the same math without graphs).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from studio.engines.hf_decode import ChunkHook, FastLlamaDecoder, _BufferCache

log = logging.getLogger("studio.engines.hf")

FIRST_BUCKET = 256


def buckets(cap: int) -> list[int]:
    """Attention lengths captured for a cache of `cap` positions: powers of two from 256, then `cap`."""
    out, size = [], FIRST_BUCKET
    while size < cap:
        out.append(size)
        size *= 2
    return out + [cap]


def widened_scores(device: Any, dtype: Any) -> bool:
    """Whether the step can take fp32 attention scores straight from bf16/fp16 keys (`bmm(out_dtype=)`, CUDA),
    or needs no widening (float32); otherwise the step attends with SDPA."""
    import torch

    if dtype == torch.float32:
        return True
    try:
        probe = torch.zeros((1, 1, 8), dtype=dtype, device=device)
        return torch.bmm(probe, probe.transpose(1, 2), out_dtype=torch.float32).dtype == torch.float32
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def decode_attention(q: Any, keys: Any, values: Any, bias: Any, scale: float) -> Any:
    """Attention for one new position: q [n, g, hd] (the g query heads sharing each of n kv heads), keys and
    values [n, size, hd], bias [n or 1, 1, size] (0 where seen, -inf after the position) → [n, g, hd].

    Why not SDPA: at g = 2 query rows its fused kernels cost 16 µs per layer at 256 positions and 27 µs at
    512 on an H200 (captured), two batched matmuls and a softmax 5-7 µs under inductor. Scores come out of
    the matmul in fp32 and the probabilities enter the second matmul in the keys' dtype, as in flash
    attention."""
    import torch

    if q.dtype == torch.float32:
        scores = torch.bmm(q, keys.transpose(1, 2))
    else:
        scores = torch.bmm(q, keys.transpose(1, 2), out_dtype=torch.float32)
    probs = torch.softmax(scores * scale + bias, dim=-1)
    return torch.bmm(probs.to(values.dtype), values)


def bucket_for(length: int, sizes: list[int]) -> Optional[int]:
    """The smallest bucket holding `length` positions, or None when none does."""
    return next((s for s in sizes if s >= length), None)


class GraphLlamaDecoder(FastLlamaDecoder):
    """FastLlamaDecoder whose one-token step replays a captured CUDA graph (see the module docstring)."""

    name = "cuda-graph"

    def __init__(self, model: Any, max_tokens: int, compile_step: bool = False) -> None:
        import torch

        super().__init__(model)
        self.compile_step = compile_step
        dev, cfg = model.device, model.config
        self.cap = max(FIRST_BUCKET, min(int(max_tokens), int(getattr(cfg, "max_position_embeddings", max_tokens))))
        self.sizes = buckets(self.cap)
        shape = (self.kv_heads, self.cap, self.head_dim)
        self.kbuf = [torch.zeros(shape, dtype=model.dtype, device=dev) for _ in self.layers]
        self.vbuf = [torch.zeros(shape, dtype=model.dtype, device=dev) for _ in self.layers]
        self.token = torch.zeros((1, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((1,), dtype=torch.long, device=dev)
        self.slots = torch.arange(self.cap, device=dev)
        with torch.inference_mode():
            # Rotary tables for every position at once, as the model computes them one position at a time.
            probe = torch.zeros((1, 1, 1), dtype=model.dtype, device=dev)
            cos, sin = model.model.rotary_emb(probe, position_ids=self.slots[None])
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        self.graphs: dict[int, Any] = {}
        self.outs: dict[int, Any] = {}  # each graph's logits, written by its replay
        self.static = False  # this sequence runs on the graph buffers
        self.bmm_attention = widened_scores(dev, model.dtype)
        self.capture_seconds = 0.0
        self.failure: Optional[str] = None

    # --- capture -----------------------------------------------------------------------------------
    def capture(self, progress: Optional[Callable[[int, int], None]] = None) -> bool:
        """Capture one graph per bucket; False (eager from then on, `failure` says why) when it fails."""
        import torch

        start = time.monotonic()
        step = self.static_step
        try:
            if self.compile_step:
                # Inductor fuses the step's ~30 small kernels per layer (norms, rotary, softmax, SiLU) into a
                # few; its kernels are then captured like the eager ones.
                # dynamic=True: one compile serves every bucket length.
                step = torch.compile(self.static_step, fullgraph=True, dynamic=True)
            pool = torch.cuda.graph_pool_handle()
            side = torch.cuda.Stream(device=self.model.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(side), self._flags():
                for size in self.sizes:  # warm-up: kernels pick their algorithms outside the capture
                    step(size)
            torch.cuda.current_stream().wait_stream(side)
            for i, size in enumerate(self.sizes):
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), self._flags(), torch.cuda.graph(graph, pool=pool):
                    self.outs[size] = step(size)
                self.graphs[size] = graph
                if progress:
                    progress(i + 1, len(self.sizes))
            torch.cuda.synchronize(self.model.device)
        except Exception as exc:  # any capture problem leaves the eager step, which always works
            log.warning("CUDA graph capture failed, decoding eagerly: %s", exc)
            self.failure, self.graphs, self.outs = f"{type(exc).__name__}: {exc}", {}, {}
            return False
        finally:
            self.capture_seconds = time.monotonic() - start
        return True

    def static_step(self, size: int) -> Any:
        """The step on the graph buffers: token and position from device tensors, attention over `size`."""
        import torch
        import torch.nn.functional as F

        inner = self.model.model
        nh, nkv, hd, half = self.heads, self.kv_heads, self.head_dim, self.head_dim // 2
        h = inner.embed_tokens(self.token)
        cos = self.cos.index_select(0, self.pos).view(1, 1, hd)
        sin = self.sin.index_select(0, self.pos).view(1, 1, hd)
        # Positions after the current one hold stale keys: masked out, they get zero weight.
        seen = (self.slots[:size] <= self.pos).view(1, 1, 1, size)
        if self.bmm_attention:  # the mask as an additive bias
            bias = torch.zeros((1, 1, size), device=seen.device).masked_fill_(~seen.view(1, 1, size), float("-inf"))
        for i, (norm1, qkv_w, o_w, scale, norm2, gu_w, down_w) in enumerate(self.layers):
            qkv = F.linear(norm1(h), qkv_w).view(nh + 2 * nkv, 1, hd)
            qk = qkv[: nh + nkv]
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            self.kbuf[i].index_copy_(1, self.pos, qk[nh:])
            self.vbuf[i].index_copy_(1, self.pos, qkv[nh + nkv :])
            # The query heads that share a KV head are its query rows (all at the same position), so GQA
            # needs no repeated keys; scores and softmax in fp32 like the eager step.
            if self.bmm_attention:
                q = qk[:nh].view(nkv, nh // nkv, hd)
                att = decode_attention(q, self.kbuf[i][:, :size], self.vbuf[i][:, :size], bias, scale)
            else:
                q = qk[:nh].view(1, nkv, nh // nkv, hd)
                keys, values = self.kbuf[i][None, :, :size], self.vbuf[i][None, :, :size]
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=seen, scale=scale)
            att = att.reshape(1, 1, nh * hd)
            h = h + F.linear(att, o_w)
            gate_up = F.linear(norm2(h), gu_w)
            h = h + F.linear(F.silu(gate_up[..., : self.inter]) * gate_up[..., self.inter :], down_w)
        return self.model.lm_head(inner.norm(h))[0, -1].float()

    # --- the decoder protocol ----------------------------------------------------------------------
    def start(self, capacity: int) -> None:
        """Use the graph buffers when the sequence fits them, else eager buffers of its own."""
        self.static = bool(self.graphs) and capacity <= self.cap
        if not self.static:
            super().start(capacity)
            return
        cache = _BufferCache.__new__(_BufferCache)
        cache.k, cache.v, cache.n = self.kbuf, self.vbuf, 0
        self.cache = cache

    def prefill(self, ids: list[int], cancelled: Callable[[], bool], embeds: Any = None,
                on_chunk: Optional[ChunkHook] = None) -> Optional[Any]:
        """The prompt through the model's own layers (into the graph buffers when they are in use)."""
        return super().prefill(ids, cancelled, embeds, on_chunk)

    def step(self, token: int) -> Any:
        """One token: a graph replay when this sequence is on the graph buffers, else the eager step."""
        if not self.static:
            return super().step(token)
        cache = self.cache
        size = bucket_for(cache.n + 1, self.sizes)
        self.token.fill_(token)
        self.pos.fill_(cache.n)
        self.graphs[size].replay()
        cache.n += 1
        return self.outs[size]

    def drop_buffers(self) -> None:
        """Free the graph buffers (after a failed capture: every sequence then runs eagerly)."""
        self.kbuf = self.vbuf = []
        self.graphs, self.outs = {}, {}

    def release(self) -> None:
        """Forget the sequence; the graph buffers stay for the next one."""
        self.cache, self.static = None, False
