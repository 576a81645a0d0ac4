"""Find, check and load a transformers model from local files only (never downloads).

A GGUF file is dequantised once (studio.engines.gguf_convert) into a safetensors checkpoint cached
under the engine cache dir, and loaded from there, then and next time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field

from studio.engines.base import LoadContext, Placement
from studio.engines.options import LocalOptions
from studio.errors import ModelNotFound, StudioError

_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "model*.safetensors.index.json")
_EXPECTED = "config.json plus weights (*.safetensors or pytorch_model*.bin), or a .gguf file"
_NO_DOWNLOAD = "Nothing is downloaded: copy the model there, or fix model_path / gguf_file."
GIB = 1024**3
log = logging.getLogger(__name__)



class HFOptions(LocalOptions):
    """engine: hf — a transformers checkpoint folder, a GGUF file, or an official InternLM-family layout."""

    engine: Literal["hf"] = "hf"
    gguf_file: Optional[str] = None
    # On a GPU the one-token decode step of a Llama-architecture model (InternLM2 included) is captured
    # as CUDA graphs at load; false decodes eagerly. Sequences longer than cuda_graph_tokens run eagerly.
    cuda_graphs: bool = True
    cuda_graph_tokens: int = Field(4096, ge=256, le=262144)
    # torch.compile the step before capturing it (fewer, fused kernels: faster decoding, but the first load
    # compiles for minutes; later loads reuse the compile cache under the studio's cache folder).
    cuda_graph_compile: bool = False
    # Requests decoded together (Llama-architecture models; others answer one at a time); None: 8 on a GPU,
    # 4 on CPU; 1: one request at a time.
    max_batch_size: Optional[int] = Field(None, ge=1, le=64)

    def concurrency(self) -> int:
        """As many requests at once as the engine batches (asked before the model loads, so on device: auto
        the GPU's figure: on a CPU-only machine the extras wait in the engine's queue)."""
        from studio.engines.hf_batch import slots_for

        return slots_for(self.max_batch_size, "cpu" if self.device == "cpu" else "cuda")

    def display_name(self) -> str:
        """The label, else the GGUF file's or the model folder's name."""
        return self.label or (Path(self.gguf_file).stem if self.gguf_file else super().display_name())


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are: its folder, and the GGUF file when it is one."""

    model_dir: Path
    gguf: Optional[Path] = None


@dataclass
class LoadedModel:
    """A loaded model, its tokenizer and how the load went."""

    model: Any
    tokenizer: Any
    files: ModelFiles
    device: str  # "cpu", "cuda:0", "cuda:0-1"
    dtype: str  # "float32", "bfloat16", "float16"
    seconds: float
    source: str  # "checkpoint", "native", "gguf", "gguf-cache"
    cache_path: Optional[Path] = None
    vision: Any = None  # the image side of a vision-language model (families.base.VisionPart)
    plan: Any = None  # the memory plan made before loading (engines.memory.MemoryPlan)


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (its __init__ may not import)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelNotFound(
            f"model_path pkg:{name}: no installed Python package named {name!r} (looked with importlib).",
            f"Install the package that embeds the model, or point model_path at a folder. {_NO_DOWNLOAD}",
        )
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent


def _single_gguf(folder: Path) -> Optional[Path]:
    """The only .gguf file of a folder without config.json; several is ambiguous."""
    found = sorted(folder.glob("*.gguf"))
    if len(found) > 1:
        raise ModelNotFound(
            f"{folder}: holds several .gguf files ({', '.join(p.name for p in found)}) and no config.json.",
            "Set gguf_file to the one to load.",
        )
    return found[0] if found else None


def resolve_model_files(model_path: str, gguf_file: Optional[str] = None) -> ModelFiles:
    """Resolve "pkg:<package>", a folder or a .gguf path, and check the expected files are there."""
    if model_path.startswith("pkg:"):
        path = _package_dir(model_path[4:].strip())
    else:
        path = Path(model_path).expanduser()
    if path.is_file() and path.suffix == ".gguf" and not gguf_file:
        return ModelFiles(path.parent, path)
    if not path.exists():
        raise ModelNotFound(f"Model path not found: {path}", f"Expected a folder with {_EXPECTED}. {_NO_DOWNLOAD}")
    if not path.is_dir():
        raise ModelNotFound(
            f"Model path is not a folder or a .gguf file: {path}", f"Expected {_EXPECTED}. {_NO_DOWNLOAD}"
        )
    if gguf_file:
        gguf = path / gguf_file
        if not gguf.is_file():
            raise ModelNotFound(
                f"GGUF file not found: {gguf}", f"Looked in {path} for {gguf_file}. {_NO_DOWNLOAD}"
            )
        return ModelFiles(path, gguf)
    if (path / "config.json").is_file():
        if not any(next(path.glob(g), None) for g in _WEIGHT_GLOBS):
            raise ModelNotFound(
                f"{path} has config.json but no weights.",
                f"Expected *.safetensors or pytorch_model*.bin beside it. {_NO_DOWNLOAD}",
            )
        return ModelFiles(path)
    gguf = _single_gguf(path)
    if gguf is None:
        raise ModelNotFound(f"{path} does not hold a model.", f"Looked for {_EXPECTED}. {_NO_DOWNLOAD}")
    return ModelFiles(path, gguf)


def pick_device(requested: str, placement: Placement, cuda_available: bool) -> str:
    """ "cpu" or "cuda": an explicit config value wins; auto uses CUDA when present and allowed."""
    if requested == "auto":
        requested = "cuda" if cuda_available and placement.device != "cpu" else "cpu"
    if requested == "cuda" and not cuda_available:
        raise StudioError("device: cuda was asked for, but torch sees no CUDA GPU.", "Set device: auto or cpu.")
    return requested


def cpu_bf16_fast() -> bool:
    """True when this CPU computes bfloat16 natively (avx512_bf16 / AMX), so bf16 weights pay off."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_dtype(requested: str, device: str) -> str:
    """The dtype name: auto → bfloat16 on CUDA; on CPU bfloat16 where native, else float32."""
    if requested != "auto":
        return requested
    # On CPU decoding is bound by memory bandwidth: bf16 weights halve the bytes read per token
    # (measured 14 → 45 tok/s for SmolLM2-135M). Without native bf16 the prompt pass gets slow.
    if device == "cuda" or cpu_bf16_fast():
        return "bfloat16"
    return "float32"


def plan_max_memory(num_gpus: int, free_bytes_per_gpu: list[int], headroom: int) -> dict[int, int]:
    """accelerate's max_memory for GPUs 0..num_gpus-1: free memory minus `headroom` bytes each."""
    if num_gpus < 1:
        raise StudioError(f"num_gpus must be at least 1 (got {num_gpus}).")
    if num_gpus > len(free_bytes_per_gpu):
        raise StudioError(
            f"Asked for {num_gpus} GPUs, but {len(free_bytes_per_gpu)} found.",
            f"Use --num-gpus {max(1, len(free_bytes_per_gpu))} or fewer.",
        )
    plan = {}
    for i in range(num_gpus):
        budget = int(free_bytes_per_gpu[i]) - int(headroom)
        if budget <= 0:
            raise StudioError(
                f"GPU {i} has only {free_bytes_per_gpu[i] / GIB:.1f} GiB free; "
                f"{headroom / GIB:.1f} GiB are kept for activations and the KV cache.",
                "Free that GPU, or use fewer GPUs.",
            )
        plan[i] = budget
    return plan


def gguf_cache_path(cache_root: Path, gguf: Path) -> Path:
    """Cache folder for a GGUF file: its stem plus a hash of size, mtime, name and transformers version."""
    import transformers

    st = gguf.stat()
    key = f"{st.st_size}|{st.st_mtime_ns}|{gguf.name}|{transformers.__version__}"
    return Path(cache_root) / f"{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _cache_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _write_cache_atomically(model: Any, tokenizer: Any, target: Path) -> bool:
    """Save model + tokenizer to `target` via a temp dir and one rename; False if not serialisable."""
    quantizer = getattr(model, "hf_quantizer", None)
    if any(type(m).__name__.startswith("Gguf") for m in model.modules()):
        return False  # weights still packed for GGUF kernels: nothing dequantised to cache
    if quantizer is not None:
        # transformers keeps the GGUF "quantizer" on a fully dequantised model; without this
        # save_pretrained refuses ("not serializable") although the weights are plain tensors.
        quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        # Left by a process killed mid-write; an hour is far longer than any write takes.
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _cache_complete(target):  # another process won the race only if its copy is whole
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _from_pretrained(kind: str, path: Path, **kwargs: Any) -> Any:
    """AutoTokenizer / AutoModelForCausalLM from local files, errors turned into StudioError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cls = AutoTokenizer if kind == "tokenizer" else AutoModelForCausalLM
    try:
        return cls.from_pretrained(str(path), local_files_only=True, **kwargs)
    except torch.cuda.OutOfMemoryError:
        raise StudioError(
            f"Out of GPU memory while loading the model from {path}.",
            "Use dtype: bfloat16/float16, more GPUs (--num-gpus), or a smaller model.",
        ) from None
    except (OSError, ValueError, ImportError, KeyError, RuntimeError, TypeError) as exc:
        text = str(exc)
        hint = (
            "This checkpoint ships its own model code: set trust_remote_code: true (only for code you trust)."
            if "trust_remote_code" in text
            else f"Check that {path} holds a complete transformers checkpoint. {_NO_DOWNLOAD}"
        )
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise StudioError(f"Cannot load the {kind} from {path}: {first_line}", hint) from None


def _placement_kwargs(device: str, num_gpus: int) -> tuple[dict, str]:
    """from_pretrained device arguments and the device label for EngineInfo."""
    import torch

    if device != "cuda":
        return {}, "cpu"
    found = torch.cuda.device_count()
    if num_gpus <= 1:
        return {"device_map": {"": 0}}, "cuda:0"
    free = [torch.cuda.mem_get_info(i)[0] for i in range(found)]
    plan = plan_max_memory(num_gpus, free, headroom=2 * GIB)
    return {"device_map": "auto", "max_memory": plan}, f"cuda:0-{num_gpus - 1}"


def _cast_parameters(model: Any, dtype: Any) -> Any:
    """Cast weights only: `model.to(dtype)` would also round buffers such as RoPE's inv_freq."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    return model


def _convert(gguf: Path) -> Optional[tuple[Any, Any]]:
    """(model to save, tokenizer) from studio.engines.gguf_convert: the files transformers' own GGUF load
    would save, in a third of the time; None for a file it cannot convert (transformers then does)."""
    from studio.engines.gguf_convert import convert_gguf

    try:
        return convert_gguf(gguf)
    except Exception as exc:  # an architecture the one-pass converter does not know
        log.info("one-pass GGUF conversion of %s failed (%s); using transformers' loader", gguf.name, exc)
        return None


def _dequantise_with_transformers(files: ModelFiles) -> tuple[Any, Any]:
    import torch

    tok = _from_pretrained("tokenizer", files.model_dir, gguf_file=files.gguf.name)
    return _from_pretrained("model", files.model_dir, gguf_file=files.gguf.name, dtype=torch.float32), tok


def _load_gguf(files: ModelFiles, ctx: LoadContext, dtype: Any, place: dict) -> tuple[Any, Any, str, Path]:
    """Model + tokenizer of a GGUF file, through the dequantised cache (written on first load)."""
    cache = gguf_cache_path(ctx.cache_dir, files.gguf)
    source = "gguf"
    if _cache_complete(cache):
        source = "gguf-cache"
    else:
        # Dequantised in float32 so the cache is exact whatever dtype a later config asks for.
        ctx.progress(0.1, f"Dequantising {files.gguf.name} (first load only)")
        converted = _convert(files.gguf)
        if converted is None:
            ctx.progress(0.25, f"Dequantising {files.gguf.name} with transformers")
        model, tok = converted or _dequantise_with_transformers(files)
        ctx.progress(0.75, "Caching the dequantised model for faster loads")
        try:
            cached = _write_cache_atomically(model, tok, cache)
        except Exception as exc:  # a full or read-only disk costs speed next time, not this load
            cached = False
            log.warning("could not write the GGUF cache %s: %s", cache, exc)
            ctx.progress(0.8, f"Could not write the model cache ({exc}); continuing")
        if not cached:
            # The converter's model is for saving only (no RoPE buffers); without a cache transformers' is used.
            model, tok = _dequantise_with_transformers(files) if converted else (model, tok)
            model = _cast_parameters(model, dtype)
            return (model.to(0) if place else model), tok, source, cache
    # Loaded from the cache: the same model a warm start gets.
    ctx.progress(0.85, "Loading the dequantised model from the cache")
    tok = _from_pretrained("tokenizer", cache)
    model = _from_pretrained("model", cache, dtype=dtype, **place)
    return model, tok, source, cache


def _place(model: Any, device: str, num_gpus: int) -> Any:
    """Move a model built on the CPU to one GPU, or spread it over several with accelerate."""
    if device != "cuda":
        return model
    if num_gpus <= 1:
        return model.to("cuda:0")
    import torch
    from accelerate import dispatch_model

    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return dispatch_model(model, device_map=split_device_map(model, plan_max_memory(num_gpus, free, 2 * GIB)))


def split_device_map(model: Any, budget: dict[int, int]) -> dict:
    """Whole layers spread evenly over the GPUs of `budget` (what transformers' device_map="auto" does).

    accelerate's own infer_auto_device_map fills GPU 0 first: a model that fits there would leave the
    other GPUs idle, and --num-gpus 2 asks for both."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    keep_whole = list(getattr(model, "_no_split_modules", None) or [type(model.model.layers[0]).__name__])
    balanced = get_balanced_memory(model, max_memory=budget, no_split_module_classes=keep_whole)
    return infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=keep_whole)


def context_tokens(cfg: HFOptions, files: ModelFiles) -> int:
    """The context the memory plan reserves KV cache for: the configured window, else config.json's."""
    if cfg.context_window:
        return cfg.context_window
    path = files.model_dir / "config.json"
    if files.gguf is None and path.is_file():
        import json

        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 2048
        text = config.get("llm_config") or config
        return int(text.get("max_position_embeddings") or 2048)
    return 2048


def load_model(cfg: HFOptions, ctx: LoadContext, files: Optional[ModelFiles] = None,
               family: Any = None) -> LoadedModel:
    """Resolve, check and load the model of `cfg` with local files only; progress via ctx.

    A family that loads its official checkpoints itself (remote code off) builds the model;
    `trust_remote_code: true` instead hands the folder to transformers' Auto classes."""
    from studio.engines.memory import make_plan, refuse_if_too_big

    started = time.perf_counter()
    ctx.progress(0.0, "Looking for the model files")
    files = files or resolve_model_files(cfg.model_path, cfg.gguf_file)
    import torch

    device = pick_device(cfg.device, ctx.placement, torch.cuda.is_available())
    dtype_name = pick_dtype(cfg.dtype, device)
    dtype = getattr(torch, dtype_name)
    num_gpus = ctx.placement.num_gpus if device == "cuda" else 1
    if files.gguf is not None and num_gpus > 1:
        raise StudioError("A GGUF model runs on one GPU here.", "Use --num-gpus 1, or a transformers checkpoint.")
    if device == "cuda" and num_gpus > torch.cuda.device_count():
        raise StudioError(f"--num-gpus {num_gpus} asked for, but {torch.cuda.device_count()} GPU(s) found.",
                          f"Use --num-gpus {max(1, torch.cuda.device_count())}.")
    tokens = context_tokens(cfg, files)
    plan = make_plan(files.model_dir, files.gguf, dtype_name, device, num_gpus, tokens,
                     vision=bool(getattr(family, "accepts_images", False)))
    ctx.progress(0.02, f"Memory plan: {plan.summary()}")
    refuse_if_too_big(plan, dtype_name, tokens)
    native = files.gguf is None and getattr(family, "loads_checkpoint", False) and not cfg.trust_remote_code
    cache_path, vision = None, None
    if native:
        parts = family.load(files.model_dir, dtype, ctx.progress)
        ctx.progress(0.9, f"Placing the model on {device}")
        model, tok, source = _place(parts.lm, device, num_gpus), parts.tokenizer, "native"
        label = "cpu" if device != "cuda" else (f"cuda:0-{num_gpus - 1}" if num_gpus > 1 else "cuda:0")
        if parts.vision is not None:
            vision = parts.vision.to(model.device)
    else:
        place, label = _placement_kwargs(device, num_gpus)
        if files.gguf is not None:
            model, tok, source, cache_path = _load_gguf(files, ctx, dtype, place)
        else:
            ctx.progress(0.1, f"Loading the tokenizer from {files.model_dir}")
            remote = {"trust_remote_code": cfg.trust_remote_code}
            tok = _from_pretrained("tokenizer", files.model_dir, **remote)
            ctx.progress(0.2, f"Loading the weights from {files.model_dir}")
            model = _from_pretrained("model", files.model_dir, dtype=dtype, **place, **remote)
            source = "checkpoint"
    model.eval()
    ctx.progress(1.0, "Model loaded")
    return LoadedModel(model, tok, files, label, dtype_name, time.perf_counter() - started, source,
                       cache_path, vision, plan)
