"""InternLM-XComposer v1 without remote code: the web demo's chat prompt, LoRA merging, the EVA +
Q-Former image side, detection and the engine on a tiny official-layout checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from studio.core.types import GenParams, ImagePart, Message, TextPart  # noqa: E402
from studio.errors import StudioError  # noqa: E402
from studio.families.sp_tokenizer import SPTokenizer  # noqa: E402
from studio.families.xcomposer1 import META_INSTRUCTION, XComposer1Family, merge_lora  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.tiny_xcomposer1 import write_tiny_xcomposer1  # noqa: E402

# The official demo's prompt text and ids (-1: image positions) on the tiny tokenizer.model.
GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "data" / "xcomposer1_golden.json").read_text("utf-8"))
EOH, EOA = 103027, 103028


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_xcomposer1(tmp_path_factory.mktemp("xcomposer1"))


@pytest.fixture(scope="module")
def tok(ckpt) -> SPTokenizer:
    return SPTokenizer.from_dir(ckpt)


def picture(seed: int = 0) -> Image.Image:
    img = Image.new("RGB", (300, 200), (240, 240, 240))
    for x in range(0, 300, 30):
        img.paste(((x * 7 + seed * 50) % 255, (x * 3) % 255, 90), (x, 0, x + 15, 200))
    return img


def conversation(turns) -> list[Message]:
    msgs = []
    for image, text, answer in turns:
        msgs.append(Message("user", ([ImagePart(picture())] if image else []) + [TextPart(text)]))
        if answer is not None:
            msgs.append(Message.of("assistant", answer))
    return msgs


# ---------------------------------------------------------------- prompt


@pytest.mark.parametrize("case", GOLDEN["conversations"], ids=lambda c: c["label"])
def test_prompt_text_and_ids_equal_the_official_demo(tok, case):
    family = XComposer1Family(tokens_per_image=10)  # the tiny checkpoint's 8 queries + 2 flags
    msgs = conversation(case["turns"])
    assert family.build_prompt(tok, msgs) == case["prompt"]
    assert [-1 if i == 0 else i for i in family.prepare(tok, msgs).ids] == case["ids"]


def test_prompt_shape_markers_and_system(tok):
    family = XComposer1Family()
    msgs = [Message("user", [TextPart("a<TOKENS_UNUSED_1>b"), ImagePart(picture()), ImagePart(picture(1))])]
    text = family.build_prompt(tok, msgs)
    assert text == (META_INSTRUCTION + " <|User|>: <Img><ImageHere></Img> <Img><ImageHere></Img> "
                    "a<TOKENS_UNUSED_1>b<TOKENS_UNUSED_0> <|Bot|>:")
    ids = family.encode(tok, msgs)
    assert ids.count(EOA) == 0 and ids.count(EOH) == 1 and ids.count(0) == 2 * 66 and ids[0] == 1
    own = family.build_prompt(tok, [Message.of("system", "Be brief."), Message.of("user", "hi")])
    assert own == "Be brief. <|User|>: hi<TOKENS_UNUSED_0> <|Bot|>:"
    assert family.build_prompt(tok, [Message.of("system", ""), Message.of("user", "hi")]).startswith(" <|User|>:")
    assert family.stop_token_ids(tok) == [2, EOH, EOA] and family.image_cost(picture()).tokens == 66


# ---------------------------------------------------------------- LoRA


def test_merge_lora_folds_adapters_and_needs_all_parts():
    w, a, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(4, 2)
    p = "internlm_model.model.layers.0.self_attn.q_proj"
    items = [(p + ".lora_B.weight", b), (p + ".bias", torch.zeros(4)), (p + ".weight", w), (p + ".lora_A.weight", a),
             ("internlm_model.model.layers.0.self_attn.k_proj.weight", w)]
    out = dict(merge_lora(items, "internlm_model.", {"self_attn.q_proj"}, 2.0, "ckpt"))
    assert set(out) == {p + ".bias", p + ".weight", "internlm_model.model.layers.0.self_attn.k_proj.weight"}
    assert torch.allclose(out[p + ".weight"], w + 2.0 * b @ a)
    with pytest.raises(StudioError, match="q_proj lacks lora_B"):
        list(merge_lora(items[2:4], "internlm_model.", {"self_attn.q_proj"}, 2.0, "ckpt"))


# ---------------------------------------------------------------- checkpoint


def test_detection_and_refusal(ckpt, tmp_path):
    from studio.families.detect import resolve_family

    assert resolve_family("auto", ckpt).name == "xcomposer"
    cfg = json.loads((ckpt / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "architectures": ["InternLMXComposer3ForCausalLM"]}))
    with pytest.raises(StudioError, match="cannot tell the model family"):
        resolve_family("auto", tmp_path)


@pytest.fixture(scope="module")
def engine(ckpt, tmp_path_factory):
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(ckpt), family="auto", device="cpu", dtype="float32")
    loaded = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), tmp_path_factory.mktemp("cache"),
                                             lambda f, t: None))
    yield loaded
    loaded.close()


def test_engine_answers_an_image_question_natively(engine):
    assert engine.loaded.source == "native" and engine.accepts_images and engine.family.name == "xcomposer"
    assert engine.image_cost(picture(), None).tokens == 10
    msgs = conversation([(True, "What is in the picture?", None)])
    params = GenParams(max_new_tokens=8, do_sample=False, repetition_penalty=1.0)
    text = "".join(d.text for d in generate(engine, GenerationRequest(msgs, params)))
    prompt = engine.family.prepare(engine.tokenizer, msgs)
    embeds, _ = engine.loaded.vision.embed(engine.model, prompt)
    new: list[int] = []
    with torch.no_grad():
        while len(new) < 8 and (not new or new[-1] not in (2, EOH, EOA)):
            extra = engine.model.get_input_embeddings()(torch.tensor([new], dtype=torch.long))
            new.append(int(engine.model(inputs_embeds=torch.cat([embeds, extra], 1)).logits[0, -1].argmax()))
    assert text and text == engine.tokenizer.decode([t for t in new if t not in (2, EOH, EOA)], skip_special_tokens=True)
    # The image matters: another picture gives other features.
    other = engine.family.prepare(engine.tokenizer, [Message("user", [ImagePart(picture(3)), TextPart("x")])])
    first = engine.loaded.vision.features(torch.stack(prompt.pixel_values))
    assert not torch.allclose(first, engine.loaded.vision.features(torch.stack(other.pixel_values)))


def test_unexpected_tensor_and_missing_part_are_clear(tmp_path):
    folder = write_tiny_xcomposer1(tmp_path / "x", shards=1, num_hidden_layers=1)
    family = XComposer1Family()
    state = torch.load(folder / "pytorch_model.bin")
    torch.save({**state, "mystery.weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(StudioError, match="unexpected tensor mystery.weight"):
        family.load(folder, torch.float32, lambda *a: None)
    torch.save({k: v for k, v in state.items() if k != "flag_image_end"}, folder / "pytorch_model.bin")
    with pytest.raises(StudioError, match="flag_image_end is missing"):
        family.load(folder, torch.float32, lambda *a: None)


def test_memory_plan_and_config_file(ckpt):
    from studio.config import DEFAULT_CONFIG, load_config
    from studio.engines.memory import kv_bytes, make_plan

    plan = make_plan(ckpt, None, "float32", "cpu", 1, 2048, vision=True, free=1 << 40)
    assert plan.kv_cache == kv_bytes(json.loads((ckpt / "config.json").read_text()), 2048, "float32") > 0
    assert plan.weights > 2 * 103168 * 64 * 4 and plan.headroom > 1024**3
    chat = load_config(DEFAULT_CONFIG.parent / "xcomposer-7b.yaml").engines["chat"]
    assert (chat.family, chat.trust_remote_code, chat.context_window) == ("xcomposer", False, 2048)


def test_bfloat16_load_keeps_every_image_part_in_bfloat16(ckpt, tok):
    family = XComposer1Family()
    parts = family.load(ckpt, torch.bfloat16, lambda *a: None)
    assert {p.dtype for p in parts.vision.parameters()} == {torch.bfloat16}
    prompt = family.prepare(parts.tokenizer, [Message("user", [ImagePart(picture()), TextPart("x")])])
    embeds, mask = parts.vision.embed(parts.lm, prompt)
    assert embeds.dtype == torch.bfloat16 and mask is None and embeds.shape[1] == len(prompt.ids)


# ---------------------------------------------------------------- article prompts


def _demo_inner(prompt: str) -> str:
    """The user text of one of the demo's raw prompts: between `<|User|>:` and `<TOKENS_UNUSED_0>`."""
    return prompt.split("<|User|>:", 1)[1].split("<TOKENS_UNUSED_0>")[0].lstrip(" ")


def test_article_prompts_are_the_v1_demos_own_texts():
    from studio.tasks.article_prompts import prompts_for, tag

    v1, paragraphs = prompts_for("xcomposer"), ["第一段。", "第二段。", "第三段。"]
    sections = "".join(f"<Seg{i}> {p}\n" for i, p in enumerate(paragraphs))  # the demo's text_sections joined
    # The demo's strings (examples/web_demo.py generate_text / generate_loc / generate_cap), verbatim.
    title = ' <|User|>:根据给定标题写一个图文并茂，不重复的文章：{}\n'.format("春天") + "<TOKENS_UNUSED_0>" + ' <|Bot|>:'
    loc = f' <|User|>:给定文章"{sections}" 根据上述文章，选择适合插入图像的行' + ' \n<TOKENS_UNUSED_0> <|Bot|>:适合插入图像的行是'
    past = '现在<Seg0>后插入图像对应的标题是"花"， <Seg1>后插入图像对应的标题是"树"， '[:-2] + '。'
    cap = f' <|User|>: 给定文章"{sections}" {past}给出适合在<Seg2>后插入的图像对应的标题。' + ' \n<TOKENS_UNUSED_0> <|Bot|>: 标题是"'
    assert v1.write("春天", "") == _demo_inner(title)
    assert v1.positions(tag(paragraphs), "") == _demo_inner(loc)
    assert v1.caption(tag(paragraphs), [(0, "花"), (1, "树")], 2) == _demo_inner(cap)
    assert prompts_for("internlm").lang == "zh" and prompts_for("xcomposer2").variant == ""


def test_article_pick_puts_each_candidate_at_its_mark(tok):
    from studio.tasks.article_prompts import prompts_for

    text = prompts_for("xcomposer").pick("第一段。", "ABCD")
    demo = ("根据给定上下文和候选图像，选择合适的配图：" + "<ImageHere>".join(["第一段。\n"])
            + "\n\n候选图像包括: A.<ImageHere>\nB.<ImageHere>\nC.<ImageHere>\nD.<ImageHere>\n\n")
    assert text == demo
    family = XComposer1Family(tokens_per_image=10)
    msgs = [Message("user", [ImagePart(picture(k)) for k in range(4)] + [TextPart(text)])]
    assert "A.<Img><ImageHere></Img>\nB.<Img><ImageHere></Img>" in family.build_prompt(tok, msgs)
    ids = family.prepare(tok, msgs).ids
    runs = [i for i in range(1, len(ids)) if ids[i] == 0 and ids[i - 1] != 0]
    assert len(runs) == 4 and ids.count(0) == 40
    # The same text without images is plain text: no image slots.
    assert 0 not in family.encode(tok, [Message.of("user", text)])


def test_article_pick_runs_on_the_real_model(engine, tmp_path):
    import threading

    from studio.core.article import Candidate
    from studio.tasks.article_images import pick
    from studio.tasks.article_model import ArticleModel
    from studio.tasks.article_prompts import prompts_for
    from tests.support.engine_calls import serving

    candidates = []
    for k in range(4):
        picture(k).save(tmp_path / f"c{k}.png")
        candidates.append(Candidate(str(tmp_path / f"c{k}.png"), "gallery", 1.0, f"c{k}"))
    steps = pick(ArticleModel(serving(engine), "chat", engine), prompts_for("xcomposer"), "第一段。", candidates,
                 True, threading.Event())
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        assert stop.value in range(4)
