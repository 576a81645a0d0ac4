"""Convert a GGUF file into a transformers model and tokenizer in one pass over the file.

transformers' own `from_pretrained(gguf_file=...)` parses the file's metadata with gguf-py's reader
three times (config, tokenizer, weights; ~2.5 s each for a 49k-token vocabulary) and builds gguf-py's
tensor-name map once per module of the model (~5 s for a 30-layer model). This does the same steps once
each, with the same functions where the numbers are made (gguf-py's numpy dequantiser, transformers'
tensor processors), so the weights are the ones transformers produces (tests/unit/test_gguf_convert.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def convert_gguf(gguf: Path) -> tuple[Any, Any]:
    """(model with the file's weights in float32, tokenizer) of a GGUF file.

    The model is for `save_pretrained` only: built on the meta device, its non-persistent buffers (RoPE)
    were never computed."""
    from transformers import AutoConfig

    settings = config_dict(gguf)
    config = AutoConfig.for_model(**settings)
    tokenizer = _tokenizer(gguf, config.model_type)
    model = _skeleton(config)
    tensors = _weights(gguf, settings, model)
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"{gguf.name}: weights missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    return model, tokenizer


# Architectures whose config transformers reads with no rule of its own (load_gguf_checkpoint's special
# cases: mistral, t5, stablelm, the MoEs, gemma, lfm2, gpt-oss …), all of them scalar settings.
_PLAIN_CONFIG = ("llama", "qwen2", "qwen3")


def config_dict(gguf: Path) -> dict:
    """The config settings transformers' load_gguf_checkpoint reads from the file, from its fast metadata
    reader (0.01 s, where gguf-py's reader parses the whole vocabulary: seconds); other architectures
    through load_gguf_checkpoint itself."""
    from transformers.integrations.gguf.reader import read_gguf_metadata
    from transformers.modeling_gguf_pytorch_utils import (GGUF_CONFIG_DEFAULTS_MAPPING, GGUF_CONFIG_MAPPING,
                                                          load_gguf_checkpoint)

    metadata, tensor_names = read_gguf_metadata(str(gguf))
    arch = metadata["general.architecture"]
    if arch not in _PLAIN_CONFIG or metadata.get("general.name") == "mistral":
        return load_gguf_checkpoint(str(gguf), return_tensors=False)["config"]
    config: dict = {"tie_word_embeddings": all(name != "output.weight" for name in tensor_names)}
    for key, value in GGUF_CONFIG_DEFAULTS_MAPPING.get(arch, {}).items():
        config.setdefault(key, value)
    for key, value in metadata.items():
        prefix, _, config_key = key.partition(".")
        renamed = GGUF_CONFIG_MAPPING.get(prefix, {}).get(config_key)
        if renamed is not None and renamed != -1:
            config[renamed] = value[0] if isinstance(value, list) and len(value) == 1 else value
    if "vocab_size" not in config and "tokenizer.ggml.tokens" in metadata:
        config["vocab_size"] = metadata["tokenizer.ggml.tokens"]  # this reader counts a string array
    return config


def _tokenizer(gguf: Path, model_type: str) -> Any:
    """The tokenizer of the file's metadata (transformers' fast reader), in the class AutoTokenizer picks for
    a GGUF file: the one registered for `model_type`, else the generic TokenizersBackend (llama's case)."""
    from transformers import AutoTokenizer
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    if TOKENIZER_MAPPING_NAMES.get(model_type):
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, tokenizer_type=model_type,
                                             local_files_only=True)
    return TokenizersBackend.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


def _skeleton(config: Any) -> Any:
    """The model's modules with no initialised weights (they are all replaced from the file)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _tied_keys(model: Any) -> set:
    """The weights that are another's (lm_head of a tied model): absent from the file, tied after loading."""
    return set(getattr(model, "_tied_weights_keys", None) or ())


def _weights(gguf: Path, config: dict, model: Any) -> dict:
    """{transformers name: float32 tensor}, dequantised and re-arranged as transformers does it."""
    import numpy as np
    import torch
    from gguf import dequantize
    from transformers.integrations.gguf.reader import GgufHeader
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    header = GgufHeader.from_file(str(gguf))
    processor = TENSOR_PROCESSORS.get(header.architecture, TensorProcessor)(config=config)
    names = weights_map(model, processor, config["model_type"], config["num_hidden_layers"])
    blob = np.memmap(gguf, mode="r")
    parsed: dict = {"tensors": {}}
    for info in header.tensors:
        weights = dequantize(_raw(blob, header.data_start, info), info.ggml_type)
        result = processor.process(weights=weights, name=info.name, tensor_key_mapping=names, parsed_parameters=parsed)
        if result.name in names:
            parsed["tensors"][names[result.name]] = torch.from_numpy(np.copy(result.weights)).to(torch.float32)
    return parsed["tensors"]


def _raw(blob: Any, data_start: int, info: Any) -> Any:
    """One tensor's bytes as gguf-py's reader hands them to `dequantize`: rows of blocks, or the floats."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    start = data_start + info.offset
    raw = blob[start:start + info.nbytes]
    kind = GGMLQuantizationType(info.ggml_type)
    if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.F64,
                GGMLQuantizationType.I8, GGMLQuantizationType.I16, GGMLQuantizationType.I32,
                GGMLQuantizationType.I64):
        dtype = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                 "I32": np.int32, "I64": np.int64}[kind.name]
        return raw.view(dtype).reshape(info.shape)
    block, size = GGML_QUANT_SIZES[kind]
    return raw.reshape(*info.shape[:-1], info.shape[-1] // block * size)


def weights_map(model: Any, processor: Any, model_type: str, num_layers: int) -> dict:
    """{gguf tensor name: transformers name}: transformers' get_gguf_hf_weights_map with gguf-py's name map
    built once rather than once per module."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    gguf_type = _GGUF_TYPE_NAMES.get(model_type, model_type)
    arch = next((k for k, v in MODEL_ARCH_NAMES.items() if v == gguf_type), None)
    if arch is None:
        raise NotImplementedError(f"Unknown gguf model_type: {model_type} in gguf-py.")
    return _map_module(model, processor, get_tensor_name_map(arch, num_layers), "")


# transformers' renames of its model types to gguf-py's (get_gguf_hf_weights_map)
_GGUF_TYPE_NAMES = {"cohere": "command-r", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "gemma3_text": "gemma3",
                    "gemma4_text": "gemma4", "umt5": "t5", "minimax_m2": "minimax-m2", "gpt_oss": "gpt-oss"}


def _map_module(module: Any, processor: Any, name_map: Any, qual_name: str) -> dict:
    found: dict = {}
    for hf_name in module.state_dict():
        hf_name = processor.preprocess_name(hf_name)
        name, suffix = hf_name, ""
        if hf_name.endswith(".weight") or hf_name.endswith(".bias"):
            name, suffix = hf_name.rsplit(".", 1)
            suffix = "." + suffix
        gguf_name = name_map.get_name(name)
        if gguf_name is None:
            processor.perform_fallback_tensor_mapping(found, suffix, qual_name, hf_name)
            continue
        found[gguf_name + suffix] = qual_name + hf_name
    for child_name, child in module.named_children():
        sub = _map_module(child, processor, name_map, f"{qual_name}{child_name}.")
        found.update({k: v for k, v in sub.items() if k not in found})
    return found
