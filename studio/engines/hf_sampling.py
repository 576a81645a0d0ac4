"""Per-request pieces of the transformers engine's decode loop: the sampler (one request's sampling
settings, seed and repetition penalty) and the text assembler (ids to streamed text, stop strings held back).

Apart from hf.py so that the batcher (hf_batch.py) uses the same pieces without importing the engine."""

from __future__ import annotations

import threading
from typing import Any

from studio.core.types import GenParams


class _Sampler:
    """Picks the next token with generate's semantics: repetition penalty, then temperature,
    top-k and top-p, but without sorting the whole vocabulary (a 49k-entry sort per token
    cost 2.4-5 ms on CPU, 13-25% of a decode step)."""

    WINDOW = 1024  # top-p candidates tried before falling back to a full sort

    def __init__(self, params: GenParams, prompt: list[int], capacity: int, device: Any) -> None:
        import torch

        self.p = params
        self.greedy = not params.do_sample or params.temperature == 0
        # The penalty looks at prompt + reply, like generate's input_ids.
        self.ids = torch.zeros(len(prompt) + capacity, dtype=torch.long, device=device)
        self.ids[: len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        self.n = len(prompt)
        # A private generator: a seed makes this reply reproducible without touching global RNG.
        self.gen = torch.Generator(device=device)
        if params.seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(params.seed)

    def _penalise(self, scores: Any) -> Any:
        # As RepetitionPenaltyLogitsProcessor: divide positive scores, multiply negative ones.
        import torch

        seen = self.ids[: self.n]
        picked = scores.gather(0, seen)
        penalty = self.p.repetition_penalty
        return scores.scatter(0, seen, torch.where(picked < 0, picked * penalty, picked / penalty))

    def _candidates(self, scores: Any) -> tuple[Any, Any]:
        """(probabilities, token ids) after top-k and top-p, best first; unnormalised is fine."""
        import torch

        vocab, top_k, top_p = scores.shape[0], self.p.top_k, self.p.top_p
        if 0 < top_k < vocab:
            vals, idx = torch.topk(scores, top_k)
            probs = torch.softmax(vals, dim=0)  # top-p then sees the top-k renormalised, as in HF
        elif top_p >= 1.0:
            return torch.softmax(scores, dim=0), None
        else:
            vals, idx = torch.topk(scores, min(vocab, self.WINDOW))
            probs = torch.exp(vals - torch.logsumexp(scores, dim=0))
            if probs.sum() < top_p:  # the nucleus is wider than the window: sort everything
                vals, idx = torch.sort(scores, descending=True)
                probs = torch.softmax(vals, dim=0)
        if top_p < 1.0:
            # HF drops a token when the mass of the tokens ranked above it already reaches top_p.
            probs = probs * ((torch.cumsum(probs, dim=0) - probs) < top_p)
        return probs, idx

    def pick(self, logits: Any) -> int:
        """The next token id from fp32 logits [vocab]."""
        import torch

        scores = logits.to(self.ids.device)  # a model split over GPUs returns them on the last one
        if self.p.repetition_penalty != 1.0:
            scores = self._penalise(scores)
        if self.greedy:
            token = int(scores.argmax())
        else:
            if self.p.temperature != 1.0:
                scores = scores / self.p.temperature
            probs, idx = self._candidates(scores)
            choice = torch.multinomial(probs, 1, generator=self.gen)
            token = int(choice if idx is None else idx[choice])
        self.ids[self.n] = token
        self.n += 1
        return token


class _TextAssembler:
    """Token ids → text pieces, never splitting a character or dropping a leading space,
    holding back text that might be the start of a stop string."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], lock: threading.Lock) -> None:
        self.tok, self.lock = tokenizer, lock
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.prefix = self.read = 0
        self.text = ""
        self.sent = 0

    def _decode(self, ids: list[int]) -> str:
        with self.lock:
            return self.tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> tuple[str, bool]:
        """Add a token; (text safe to emit now, whether a stop string was reached)."""
        self.ids.append(token)
        # Decode a sliding window and diff it against the same window without the new tokens:
        # SentencePiece drops the leading space of a sequence's first token, and a CJK
        # character can span tokens (the partial decode ends in U+FFFD until it completes).
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.text += after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
        return self._release()

    def _release(self) -> tuple[str, bool]:
        found = [i for i in (self.text.find(s, self.sent) for s in self.stops) if i >= 0]
        if found:
            end, hit = min(found), True
        else:
            end, hit = max(self.sent, len(self.text) - self.hold), False
        piece, self.sent = self.text[self.sent : end], end
        return piece, hit

    def flush(self) -> str:
        """Everything not yet emitted (the held-back tail, complete characters only)."""
        tail = self._decode(self.ids[self.prefix :])[len(self._decode(self.ids[self.prefix : self.read])) :]
        self.text += tail.rstrip("\ufffd")
        piece, hit = self._release()
        if hit:
            return piece
        piece, self.sent = piece + self.text[self.sent :], len(self.text)
        return piece
