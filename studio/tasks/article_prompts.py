"""The article pipeline's prompts: the official XComposer demo's Chinese prompts for InternLM-family
models, and English equivalents for the rest (the embedded SmolLM2 only speaks English).
InternLM-XComposer v1 gets the exact texts of its own demo (examples/web_demo.py at 3e8c790), which
its family wraps in its ` <|User|>: …<TOKENS_UNUSED_0> <|Bot|>:` turn."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Families trained on the official Chinese prompts.
CHINESE_FAMILIES = {"internlm", "internlm2", "internlm3", "internvl2", "internvl2_5", "xcomposer", "xcomposer2"}
XCOMPOSER1 = "xcomposer1"  # the variant with InternLM-XComposer v1's own demo texts
TOKENS_PER_PARAGRAPH = 75  # a short paragraph of 50-60 English words
SEG = re.compile(r"<\s*Seg\s*(\d+)\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Prompts:
    """One language's prompt set."""

    lang: str
    variant: str = ""

    def write(self, instruction: str, material: str, max_new_tokens: int = 700) -> str:
        """Ask for the article text (in English, as many paragraphs as `max_new_tokens` has room for)."""
        if self.variant == XCOMPOSER1:  # generate_text: the title, then a newline before <eoh>
            return f"根据给定标题写一个图文并茂，不重复的文章：{instruction}" + (f"\n基于以下素材：{material}" if material else "") + "\n"
        if self.lang == "zh":
            text = f"根据给定标题写一个图文并茂，不重复的文章：{instruction}"
            return text + (f"\n基于以下素材：{material}" if material else "")
        count = min(8, max(3, max_new_tokens // TOKENS_PER_PARAGRAPH))
        text = (f"Write an illustrated article titled \"{instruction}\". Write {count} short paragraphs separated by "
                "blank lines, without repeating yourself. Do not repeat the title.")
        return text + (f"\nUse this material:\n{material}" if material else "")

    def positions(self, tagged: str, count: str) -> str:
        """Ask which paragraphs should be followed by an image."""
        if self.variant == XCOMPOSER1:  # generate_loc: its sections each end with a newline
            return f'给定文章"{tagged}\n" 根据上述文章，选择适合插入图像的{count}行 \n'
        if self.lang == "zh":
            return f'给定文章"{tagged}" 根据上述文章，选择适合插入图像的{count}行'
        many = f"{count} paragraphs" if count else "paragraphs (choose how many)"
        return (f'Article: "{tagged}"\nWhich {many} of the article above should be followed by an image? '
                "Answer with their tags only, for example: <Seg0>, <Seg2>")

    def caption(self, context: str, past: list[tuple[int, str]], position: int) -> str:
        """Ask for the caption of the image after paragraph `position`, earlier captions as context."""
        if self.variant == XCOMPOSER1:  # generate_cap: "现在" once, "， " after each, the last "， " → "。"
            done = "".join(f'{"" if k else "现在"}<Seg{p}>后插入图像对应的标题是"{c}"， ' for k, (p, c) in enumerate(past))
            done = done[:-2] + "。" if done else ""
            return f'给定文章"{context}\n" {done}给出适合在<Seg{position}>后插入的图像对应的标题。 \n'
        if self.lang == "zh":
            done = "".join(f'现在<Seg{p}>后插入图像对应的标题是"{c}"，' for p, c in past)
            done = done[:-1] + "。" if done else ""
            return f'给定文章"{context}" {done}给出适合在<Seg{position}>后插入的图像对应的标题。'
        done = "".join(f'The image after <Seg{p}> shows "{c}". ' for p, c in past)
        return (f'Article: "{context}"\n{done}Write a short caption (under 12 words) for a new, different image '
                f"to place after <Seg{position}>. Reply with the caption only.")

    def pick(self, paragraph: str, letters: str) -> str:
        """Ask which candidate image fits the paragraph (the images come with the message, in order)."""
        if self.variant == XCOMPOSER1:  # model_select_image: each candidate at its <ImageHere>
            listed = "\n".join(f"{k}.<ImageHere>" for k in letters)
            return f"根据给定上下文和候选图像，选择合适的配图：{paragraph}\n\n\n候选图像包括: {listed}\n\n"
        if self.lang == "zh":
            return f"根据给定上下文和候选图像，选择合适的配图：{paragraph}\n候选图像依次为 {'、'.join(letters)}。最合适的图是"
        return (f"Paragraph: {paragraph}\nWhich candidate image ({', '.join(letters)}, in the order shown) fits "
                "this paragraph best? Answer with one letter.")

    def edit(self, op: str, text: str, instruction: str, prev: str = "") -> str:
        """The official editing prompts: rewrite / expand / shorten / insert."""
        zh = {
            "rewrite": f"改写以下段落：{text}\n基于以下素材：{instruction}",
            "expand": f"扩写以下段落：{text}\n基于以下素材：{instruction}",
            "shorten": f"缩写以下段落：{text}",
            "insert": f"在以下两段中插入一段。\n第一段：{prev}\n第二段：{text}\n插入段的大纲：{instruction}",
        }
        en = {
            "rewrite": f"Rewrite the following paragraph. Reply with the new paragraph only.\n{text}\n"
                       f"Based on this material: {instruction}",
            "expand": f"Expand the following paragraph with more detail. Reply with the new paragraph only.\n{text}\n"
                      f"Based on this material: {instruction}",
            "shorten": f"Shorten the following paragraph. Reply with the new paragraph only.\n{text}",
            "insert": "Write one paragraph that fits between these two. Reply with the new paragraph only.\n"
                      f"First: {prev}\nSecond: {text}\nOutline of the new paragraph: {instruction}",
        }
        return (zh if self.lang == "zh" else en)[op]


def prompts_for(family: str) -> Prompts:
    """The prompt set a model family understands."""
    if family == "xcomposer":
        return Prompts("zh", XCOMPOSER1)
    return Prompts("zh" if family in CHINESE_FAMILIES else "en")


def split_paragraphs(text: str, limit: int = 60) -> list[str]:
    """Non-empty lines/paragraphs of the article (the demo's max_section cap), markdown headings kept."""
    parts = [p.strip() for p in re.split(r"\n\s*\n|\n", text or "")]
    return [p for p in parts if p][:limit]


def drop_unfinished(text: str) -> str:
    """`text` without a last sentence cut off by the token limit (kept when no whole sentence would remain)."""
    body = (text or "").rstrip()
    if not body or body[-1] in ".!?。！？\"”'）)":
        return body
    ends = [m.start() for m in SENTENCE_END.finditer(body)]
    return body[: ends[-1]].rstrip() if ends else body


def tag(paragraphs: list[str]) -> str:
    """The article with `<Seg{i}>` tags, as the position prompt expects."""
    return "\n".join(f"<Seg{i}> {p}" for i, p in enumerate(paragraphs))


def parse_positions(answer: str, paragraphs: int) -> tuple[list[int], list[int]]:
    """(valid positions in order, rejected numbers) from the model's answer."""
    found = [int(m) for m in SEG.findall(answer or "")]
    if not found:
        found = [int(m) for m in re.findall(r"\d+", answer or "")]
    valid, rejected = [], []
    for n in found:
        (valid if 0 <= n < paragraphs and n not in valid else rejected).append(n)
    return valid, rejected


def clean_caption(answer: str) -> str:
    """The caption itself: the first line, without a leading "标题是"/"Caption:" and quotes."""
    text = (answer or "").strip().splitlines()[0] if (answer or "").strip() else ""
    text = re.sub(r'^(标题是|标题：|标题:|caption\s*:)\s*', "", text, flags=re.IGNORECASE)
    text = text.strip().strip('"“”\'「」*').strip()
    if '"' in text:
        text = text.split('"')[0].strip()
    return first_sentence(text)


SENTENCE_END = re.compile(r"(?<=[.!?])\s|(?<=[。！？])")
MIN_SENTENCE = 12
CAPTION_MAX = 200  # a caption is one sentence; a model that rambles on is stopped at a sentence, never mid-word


def first_sentence(text: str, limit: int = CAPTION_MAX) -> str:
    """The first sentence of `text`, whole (a caption shown in full, never cut with "…")."""
    text = " ".join((text or "").split())
    ends = [m.start() for m in SENTENCE_END.finditer(text) if m.start() >= MIN_SENTENCE]  # "Dr." is no sentence
    head = text[: ends[0]].strip() if ends else text
    if len(head) <= limit:
        return head
    cut = head[:limit]
    return cut[: cut.rfind(" ")].rstrip(" ,;:，、") if " " in cut else cut
