"""One decode step for several sequences at once: the lean Llama step with a batch dimension.

Why: a one-token step reads every weight once; B sequences stepping together read them once for
all B rows, so on a GPU (memory-bound) and on CPU (oneDNN's many-row bf16 matmul) B users cost far
less than B steps. Two forms:
- `BatchStep` (eager, CPU and the CUDA fallback): each sequence keeps its own KV cache, sized to
  its request as in the single-user path; the matmuls run over all rows together and attention
  runs row by row with the single-user step's math. One row alone is the single-user step itself.
  Several rows on CPU run on oneDNN (bf16: 4 rows cost ~1.4x one; ATen's many-row kernel 3-10x),
  whose rows are independent of each other but round differently from ATen's one-row GEMV: in
  fp32 logits agree to ~1e-4, in bf16 to rounding, so a greedy reply decoded alongside others
  can take the other branch at a near-tie (tests/unit/test_hf_batch.py checks both).
- `GraphBatchStep` (CUDA): every slot's cache lives in one preallocated buffer, the step reads
  tokens and positions from device tensors and attends with a per-row mask, and is captured as a
  CUDA graph per (batch bucket, length bucket), as hf_graphs does for one sequence.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Optional

from studio.engines.hf_decode import PREFILL_CHUNK, FastLlamaDecoder, _BufferCache, prefill_flags
from studio.engines.hf_graphs import bucket_for, buckets, decode_attention, widened_scores

log = logging.getLogger("studio.engines.hf")


def _rotate(qk: Any, cos: Any, sin: Any, half: int) -> Any:
    import torch

    return qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin


class BatchStep:
    """Eager batched step over per-sequence caches (see the module docstring)."""

    name = "eager"

    def __init__(self, decoder: FastLlamaDecoder) -> None:
        self.d = decoder
        self.graphs: dict = {}  # none: eager
        self.cap: Optional[int] = None  # no limit: each cache is sized to its request

    def new_cache(self, slot: int, capacity: int) -> _BufferCache:
        """A cache of `capacity` positions for the sequence joining slot `slot`."""
        d = self.d
        return _BufferCache(len(d.layers), d.kv_heads, capacity, d.head_dim, d.model.dtype, d.model.device)

    def prefill_many(self, prompts: list[list[int]], caches: list[_BufferCache]) -> Any:
        """Several text prompts (each ≤ PREFILL_CHUNK tokens) in one forward through the model's own layers,
        right-padded to the longest: causal attention never lets a real position see the padding after it,
        so each row is its prompt's own prefill. Each row's keys/values go into its cache; fp32 logits
        [rows, vocab] at each prompt's last token. On a GPU one prompt's prefill is mostly kernel launches,
        so 8 joining users cost about one prefill instead of eight."""
        import torch

        d, rows = self.d, len(prompts)
        inner, dev = d.model.model, d.model.device
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        assert width <= PREFILL_CHUNK and all(c.n == 0 for c in caches)
        ids = torch.tensor([p + [p[-1]] * (width - len(p)) for p in prompts], device=dev)
        pos = torch.arange(width, device=dev)[None].expand(rows, width)
        hidden = inner.embed_tokens(ids)
        rope = inner.rotary_emb(hidden, position_ids=pos)
        into = _RowsCache(caches, lengths)
        with prefill_flags(d.model)():
            for layer in inner.layers:  # no mask: a plain causal pass, as the single prefill's first chunk
                hidden = layer(hidden, attention_mask=None, position_ids=pos, past_key_values=into,
                               use_cache=True, position_embeddings=rope)
        for cache, n in zip(caches, lengths):
            cache.n = n
        last = hidden[torch.arange(rows, device=dev), torch.tensor(lengths, device=dev) - 1]
        return d.model.lm_head(inner.norm(last[:, None]))[:, -1].float()

    def _flags(self, rows: int) -> contextlib.AbstractContextManager:
        # On CPU the one-row flags turn oneDNN off (ATen's GEMV is faster for one row); for several rows
        # oneDNN's matmul is the fast one (4 rows cost ~1.4x one row, ATen's 3x) and gives the same bits.
        if rows > 1 and self.d.model.device.type == "cpu":
            return contextlib.nullcontext()
        return self.d._flags()

    def forward(self, tokens: list[int], caches: list[_BufferCache], slots: list[int]) -> Any:
        """One token per sequence → fp32 logits [rows, vocab]; each cache advances by one."""
        import torch

        with self._flags(len(tokens)):
            if len(tokens) == 1:  # alone: the single-user step itself, so a lone reply is the same bits
                cache = caches[0]
                token = torch.tensor([tokens], device=self.d.model.device)
                logits = self.d.forward_one(token, cache.n, cache.k, cache.v)[None]
            else:
                logits = self._forward(tokens, caches)
        for cache in caches:
            cache.n += 1
        return logits

    def _forward(self, tokens: list[int], caches: list[_BufferCache]) -> Any:
        import torch
        import torch.nn.functional as F

        d = self.d
        inner, rows = d.model.model, len(tokens)
        nh, nkv, hd, half = d.heads, d.kv_heads, d.head_dim, d.head_dim // 2
        dev = d.model.device
        h = inner.embed_tokens(torch.tensor(tokens, device=dev).view(rows, 1))
        positions = torch.tensor([c.n for c in caches], device=dev).view(rows, 1)
        cos, sin = inner.rotary_emb(h, position_ids=positions)
        cos, sin = cos.view(rows, 1, 1, hd), sin.view(rows, 1, 1, hd)
        for i, (norm1, qkv_w, o_w, scale, norm2, gu_w, down_w) in enumerate(d.layers):
            qkv = F.linear(norm1(h), qkv_w).view(rows, nh + 2 * nkv, 1, hd)
            qk = _rotate(qkv[:, : nh + nkv], cos, sin, half)
            out = []
            for r, cache in enumerate(caches):  # FastLlamaDecoder.forward_one's attention, per row
                n = cache.n
                cache.k[i][:, n : n + 1] = qk[r, nh:]
                cache.v[i][:, n : n + 1] = qkv[r, nh + nkv :]
                keys, values = cache.k[i][:, : n + 1], cache.v[i][:, : n + 1]
                q = qk[r, :nh].view(nkv, nh // nkv, hd).float()
                probs = torch.softmax(torch.matmul(q, keys.float().transpose(1, 2)) * scale, dim=-1)
                out.append(torch.matmul(probs, values.float()).to(h.dtype).view(1, 1, nh * hd))
            h = h + F.linear(torch.cat(out), o_w)
            gate_up = F.linear(norm2(h), gu_w)
            h = h + F.linear(F.silu(gate_up[..., : d.inter]) * gate_up[..., d.inter :], down_w)
        return d.model.lm_head(inner.norm(h))[:, -1].float()


class _RowsCache:
    """The cache HF attention writes during `BatchStep.prefill_many`: row r's first lengths[r] keys and values
    go into caches[r]; attention within the pass uses the keys just computed (nothing is cached before)."""

    def __init__(self, caches: list[_BufferCache], lengths: list[int]) -> None:
        self.caches, self.lengths = caches, lengths

    def update(self, key: Any, value: Any, layer: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        for r, (cache, n) in enumerate(zip(self.caches, self.lengths)):
            cache.k[layer][:, :n] = key[r, :, :n]
            cache.v[layer][:, :n] = value[r, :, :n]
        return key, value


def batch_buckets(slots: int) -> list[int]:
    """Batch sizes captured for `slots` slots: powers of two, then `slots`."""
    out, size = [], 1
    while size < slots:
        out.append(size)
        size *= 2
    return out + [slots]


def graph_tokens(decoder: FastLlamaDecoder, slots: int, want: int, free: int, headroom: int = 2 * 1024**3) -> int:
    """Positions per slot for the shared cache: `want`, halved until slots × positions fit `free` less
    `headroom` (the plan counted one sequence's cache, not one per slot); 0 when even 256 do not fit."""
    per_position = len(decoder.layers) * 2 * decoder.kv_heads * decoder.head_dim * decoder.model.dtype.itemsize
    tokens = want
    while tokens > 256 and slots * tokens * per_position > free - headroom:
        tokens //= 2
    return tokens if slots * max(tokens, 256) * per_position <= free - headroom else 0


class GraphBatchStep(BatchStep):
    """Batched step on one preallocated cache for all slots, replayed as CUDA graphs (module docstring)."""

    name = "cuda-graph"

    def __init__(self, decoder: FastLlamaDecoder, slots: int, max_tokens: int) -> None:
        import torch

        super().__init__(decoder)
        model, dev = decoder.model, decoder.model.device
        self.slots = slots
        self.cap = max(256, min(int(max_tokens), int(getattr(model.config, "max_position_embeddings", max_tokens))))
        self.sizes, self.batches = buckets(self.cap), batch_buckets(slots)
        shape = (slots, decoder.kv_heads, self.cap, decoder.head_dim)
        # Zeros, not empty: masked positions still enter the attention matmul (with zero weight).
        self.kbuf = [torch.zeros(shape, dtype=model.dtype, device=dev) for _ in decoder.layers]
        self.vbuf = [torch.zeros(shape, dtype=model.dtype, device=dev) for _ in decoder.layers]
        self.tokens = torch.zeros((slots,), dtype=torch.long, device=dev)
        self.pos = torch.zeros((slots,), dtype=torch.long, device=dev)
        self.rows = torch.arange(slots, device=dev)
        self.heads_at = torch.arange(decoder.kv_heads, device=dev)
        self.places = torch.arange(self.cap, device=dev)
        with torch.inference_mode():
            probe = torch.zeros((1, 1, 1), dtype=model.dtype, device=dev)
            cos, sin = model.model.rotary_emb(probe, position_ids=self.places[None])
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        self.bmm_attention = widened_scores(dev, model.dtype)
        self.graphs: dict[tuple[int, int], Any] = {}
        self.outs: dict[tuple[int, int], Any] = {}
        self.capture_seconds = 0.0
        self.failure: Optional[str] = None

    def new_cache(self, slot: int, capacity: int) -> _BufferCache:
        """Slot `slot`'s view of the shared buffers (the prompt is prefilled straight into them)."""
        if not self.kbuf:  # freed after a failed capture
            return super().new_cache(slot, capacity)
        cache = _BufferCache.__new__(_BufferCache)
        cache.k, cache.v, cache.n = [k[slot] for k in self.kbuf], [v[slot] for v in self.vbuf], 0
        return cache

    def capture(self, progress: Optional[Callable[[int, int], None]] = None) -> bool:
        """One graph per (batch, length) bucket; False (eager from then on, `failure` says why) on failure."""
        import torch

        start, keys = time.monotonic(), [(b, s) for b in self.batches for s in self.sizes]
        # Not compiled: torch.compile(dynamic=True) over (batch, length) took 383 s at load on an H200 and its
        # kernels ran slower than these (8 users 960 against 1 690 tok/s; docs/BENCHMARKS.md).
        try:
            pool = torch.cuda.graph_pool_handle()
            side = torch.cuda.Stream(device=self.d.model.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(side), self.d._flags():
                for b, s in keys:  # warm-up: kernels pick their algorithms outside the capture
                    self.static_step(b, s)
            torch.cuda.current_stream().wait_stream(side)
            for i, key in enumerate(keys):
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), self.d._flags(), torch.cuda.graph(graph, pool=pool):
                    self.outs[key] = self.static_step(*key)
                self.graphs[key] = graph
                if progress:
                    progress(i + 1, len(keys))
            torch.cuda.synchronize(self.d.model.device)
        except Exception as exc:  # any capture problem leaves the eager batched step
            log.warning("CUDA graph capture of the batched step failed, batching eagerly: %s", exc)
            self.failure, self.graphs, self.outs = f"{type(exc).__name__}: {exc}", {}, {}
            self.kbuf = self.vbuf = []
            return False
        finally:
            self.capture_seconds = time.monotonic() - start
        return True

    def static_step(self, rows: int, size: int) -> Any:
        """Rows 0..rows-1 (slot r in row r): tokens and positions from the device tensors, attention over `size`."""
        import torch
        import torch.nn.functional as F

        d = self.d
        inner = d.model.model
        nh, nkv, hd, half = d.heads, d.kv_heads, d.head_dim, d.head_dim // 2
        pos = self.pos[:rows]
        # Where each row's new key goes in a layer's buffer seen as [slots × kv_heads × cap, head_dim]:
        # index_copy_ with device indices, as the one-sequence graph step writes its cache.
        flat = ((self.rows[:rows, None] * nkv + self.heads_at[None, :]) * self.cap + pos[:, None]).view(-1)
        h = inner.embed_tokens(self.tokens[:rows].view(rows, 1))
        cos = self.cos.index_select(0, pos).view(rows, 1, 1, hd)
        sin = self.sin.index_select(0, pos).view(rows, 1, 1, hd)
        seen = (self.places[:size][None, :] <= pos[:, None]).view(rows, 1, 1, size)
        if self.bmm_attention:  # the mask as an additive bias, one row per (sequence, kv head)
            bias = torch.zeros((rows, nkv, 1, size), device=seen.device).masked_fill_(~seen, float("-inf"))
            bias = bias.view(rows * nkv, 1, size)
        for i, (norm1, qkv_w, o_w, scale, norm2, gu_w, down_w) in enumerate(d.layers):
            qkv = F.linear(norm1(h), qkv_w).view(rows, nh + 2 * nkv, 1, hd)
            qk = _rotate(qkv[:, : nh + nkv], cos, sin, half)
            self.kbuf[i].view(-1, hd).index_copy_(0, flat, qk[:, nh:, 0].reshape(rows * nkv, hd))
            self.vbuf[i].view(-1, hd).index_copy_(0, flat, qkv[:, nh + nkv :, 0].reshape(rows * nkv, hd))
            keys, values = self.kbuf[i][:rows, :, :size], self.vbuf[i][:rows, :, :size]
            q = qk[:, :nh].reshape(rows, nkv, nh // nkv, hd)
            if self.bmm_attention:  # rows × kv heads as one batch of single-position attentions
                att = decode_attention(q.reshape(rows * nkv, nh // nkv, hd), keys.reshape(rows * nkv, size, hd),
                                       values.reshape(rows * nkv, size, hd), bias, scale)
            else:
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=seen, scale=scale)
            h = h + F.linear(att.reshape(rows, 1, nh * hd), o_w)
            gate_up = F.linear(norm2(h), gu_w)
            h = h + F.linear(F.silu(gate_up[..., : d.inter]) * gate_up[..., d.inter :], down_w)
        return d.model.lm_head(inner.norm(h))[:, -1].float()

    def forward(self, tokens: list[int], caches: list[_BufferCache], slots: list[int]) -> Any:
        """A graph replay for the smallest buckets holding these slots and lengths, else the eager step."""
        import torch

        rows = bucket_for(max(slots) + 1, self.batches) if self.graphs else None
        size = bucket_for(max(c.n for c in caches) + 1, self.sizes) if rows else None
        if size is None:
            return super().forward(tokens, caches, slots)
        # Rows of idle slots in the bucket write at position 0 of their own slot: a joining sequence's
        # prefill overwrites it, and nothing reads past a sequence's own position.
        pos, tok = [0] * rows, [0] * rows
        for t, c, s in zip(tokens, caches, slots):
            pos[s], tok[s] = c.n, t
        self.pos[:rows].copy_(torch.tensor(pos))
        self.tokens[:rows].copy_(torch.tensor(tok))
        self.graphs[(rows, size)].replay()
        for cache in caches:
            cache.n += 1
        return self.outs[(rows, size)][torch.tensor(slots, device=self.tokens.device)]
