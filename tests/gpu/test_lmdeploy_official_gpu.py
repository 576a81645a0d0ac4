"""Official-layout InternLM2 and InternVL2 checkpoints on the lmdeploy engine (GPU machine).

Real checkpoints ship their configuration and tokenizer as Python files, which lmdeploy runs
(`trust_remote_code: true` in the lmdeploy configs). The tests copy those files from the folder named
by PUYU_OFFICIAL_CODE (flattened from the official repositories: configuration_internlm2.py,
tokenization_internlm2*.py, configuration_internvl_chat.py, configuration_intern_vit.py,
configuration_phi3.py) next to tiny random weights in the official layouts; without it they skip.
They check that lmdeploy serves them through the studio's tokenizer overlay with the official ids.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lmdeploy")
CODE = os.environ.get("PUYU_OFFICIAL_CODE", "")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="the lmdeploy engine needs CUDA"),
              pytest.mark.skipif(not Path(CODE or "/nonexistent").is_dir(), reason="PUYU_OFFICIAL_CODE not set")]

from studio.engines.lmdeploy_setup import LmdeployOptions  # noqa: E402
from studio.core.types import GenParams, ImagePart, Message, TextPart  # noqa: E402
from studio.engines import ENGINES  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2  # noqa: E402
from tests.support.tiny_internvl2 import write_tiny_internvl2  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate, prompt_tokens

LLM = {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
       "intermediate_size": 512}


def _with_code(folder: Path) -> Path:
    for f in Path(CODE).glob("*.py"):
        shutil.copy(f, folder / f.name)
    return folder


def _load(model: Path, family: str, tmp: Path):
    cfg = LmdeployOptions(family=family, model_path=str(model), trust_remote_code=True,
                       backend="pytorch", session_len=4096, max_batch_size=4, max_tiles=2)
    return ENGINES.get("lmdeploy").load(cfg, LoadContext("chat", Placement("auto", 1), tmp / "cache", lambda f, t: None))


def _ask(engine, message: Message):
    request = GenerationRequest([message], GenParams(max_new_tokens=16, do_sample=False))
    return list(generate(engine, request))[-1]


def test_internlm2_official_layout_on_lmdeploy(tmp_path):
    model = _with_code(write_tiny_internlm2(tmp_path / "internlm2", **LLM))
    engine = _load(model, "internlm2", tmp_path)
    try:
        question = Message.of("user", "Hello, who are you?")
        last = _ask(engine, question)
        assert last.finish_reason in ("length", "stop") and last.error is None, last
        # lmdeploy tokenized the prompt with the overlay: the same count as ours (BOS counted once).
        assert abs(last.prompt_tokens - prompt_tokens(engine, [question])) <= 1, (last.prompt_tokens,)
    finally:
        engine.close()


def test_internvl2_official_layout_answers_an_image_on_lmdeploy(tmp_path):
    from PIL import Image

    model = _with_code(write_tiny_internvl2(tmp_path / "internvl2", vision_hidden=128, vision_heads=2,
                                            vision_layers=2, vision_intermediate=256, **LLM))
    engine = _load(model, "internvl2", tmp_path)
    try:
        image = Image.new("RGB", (900, 448), (200, 120, 40))
        message = Message("user", [ImagePart(image), TextPart("What is in the picture?")])
        assert engine.accepts_images
        last = _ask(engine, message)
        assert last.finish_reason in ("length", "stop") and last.error is None, last
        # 2 tiles + thumbnail at 256 tokens each are in the prompt lmdeploy built
        assert last.prompt_tokens >= 3 * 256, last.prompt_tokens
        again = _ask(engine, Message.of("user", "And without a picture?"))
        assert again.finish_reason in ("length", "stop") and again.error is None
    finally:
        engine.close()


def test_launched_studio_answers_image_questions_through_lmdeploy(tmp_path):
    """The shipped lmdeploy InternVL2 config, the image tab over HTTP: the lesson's `lmdeploy serve gradio`
    crashed on the first image question; here the first, a second image and a follow-up all answer."""
    from tests.e2e.helpers import connect, reply_text
    from tests.e2e.test_vision_real import ask, direct_answer, picture
    from tests.support.apps import REPO, running_app

    model = _with_code(write_tiny_internvl2(tmp_path / "InternVL2-tiny", vision_hidden=128, vision_heads=2,
                                            vision_layers=2, vision_intermediate=256, **LLM))
    config = tmp_path / "lmdeploy-internvl2.yaml"
    config.write_text((REPO / "configs" / "lmdeploy-internvl2-2b.yaml").read_text(encoding="utf-8")
                      .replace("/root/models/InternVL2-2B", str(model)), encoding="utf-8")
    with running_app(config, tmp_path / "data", cache_dir=tmp_path / "cache") as app:
        assert app.services.engines.get("chat").info().engine == "lmdeploy"
        client, _ = connect(app.url)
        photo = picture(tmp_path)
        _, final = ask(client, "What is in this picture?", [photo], tiles=2, max_new=12)
        assert "photo.png: 800×400 → 3 tile(s)" in final[2] and "failed" not in final[2].lower(), final[2]
        assert reply_text(final[0]) == direct_answer(app, photo, "What is in this picture?", 2)
        _, final = ask(client, "And this one?", [picture(tmp_path, "two.png", (448, 448))], tiles=2, max_new=12)
        assert "failed" not in final[2].lower(), final[2]
        _, final = ask(client, "Which was brighter?", tiles=2, max_new=12)
        assert "failed" not in final[2].lower(), final[2]
        users = [m for m in final[0] if m["role"] == "user"]
        assert len(users) >= 3, final[0]
