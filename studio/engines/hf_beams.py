"""Beam search for the HF engine: transformers' own `generate`, which cannot stream a beam (the
best beam is only known at the end), so the reply arrives as one delta. Cancellation is a
stopping criterion that checks the request's event between steps."""

from __future__ import annotations

from typing import Any, Iterator

from studio.core.types import GenParams, TextDelta


def beam_generate(model: Any, tokenizer: Any, ids: list[int], max_new: int, stop_ids: set[int],
                  params: GenParams, cancel: Any) -> Iterator[TextDelta]:
    """Run beam search on `ids`; yields the decoded best beam with its finish reason."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                              device=input_ids.device)

    p = params
    if p.seed is not None:
        torch.manual_seed(p.seed)  # generate samples from the global generator
    sampling = dict(do_sample=True, temperature=max(p.temperature, 1e-3), top_p=p.top_p, top_k=p.top_k) \
        if p.do_sample and p.temperature > 0 else dict(do_sample=False)
    eos = sorted(stop_ids) or None
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids], device=model.device), attention_mask=torch.ones(1, len(ids), dtype=torch.long,
                                                                                          device=model.device),
            num_beams=p.num_beams, max_new_tokens=max_new, repetition_penalty=p.repetition_penalty,
            eos_token_id=eos, pad_token_id=eos[0] if eos else 0, use_cache=True,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]), **sampling)
    new = out[0, len(ids):].tolist()
    ended = bool(new) and new[-1] in stop_ids
    while new and new[-1] in stop_ids:
        new.pop()
    text = tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    for stop in p.stop:
        if stop and stop in text:
            text, ended = text[: text.index(stop)], True
    reason = "cancelled" if cancel.is_set() else ("stop" if ended else "length")
    yield TextDelta(text=text, finish_reason=reason, prompt_tokens=len(ids), completion_tokens=len(new))
