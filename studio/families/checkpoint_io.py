"""Reading official checkpoints without their remote code: config.json, weight shards
(safetensors or pytorch .bin, with or without an index), and assigning a state dict to a model
built on the meta device. Every failure names the file or folder involved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

from studio.errors import ModelNotFound, StudioError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
_DAMAGED = "The checkpoint looks damaged or incomplete; copy it again from its source."


def read_config(model_dir: Path) -> dict:
    """config.json of `model_dir` as a dict."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelNotFound(
            f"{path}: config.json not found.",
            "Point model_path at the folder that holds the checkpoint's config.json.",
        )
    data = _read_json(path)
    if not isinstance(data, dict):
        raise StudioError(f"{path}: config.json is not a JSON object.", _DAMAGED)
    return data


def _read_json(path: Path) -> Any:
    """A JSON file, any failure as a StudioError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(f"{path}: cannot read {path.name}: {exc}", _DAMAGED) from None


def check_architectures(config: dict, expected: set[str], where: Path, family: Optional[str] = None) -> None:
    """Refuse a config.json whose `architectures` is not one of `expected`."""
    where = Path(where)
    path = where / "config.json" if where.suffix != ".json" else where
    archs = config.get("architectures")
    names = [str(a) for a in archs] if isinstance(archs, list) else []
    if len(names) == 1 and names[0] in expected:
        return
    who = f"the {family} family" if family else "this loader"
    raise StudioError(
        f"{path}: architectures is {archs!r}, but {who} expects {' or '.join(sorted(expected))}.",
        "Set `family:` to the family of this checkpoint (or `auto`), or point model_path at the right folder.",
    )


def weight_files(model_dir: Path) -> tuple[list[Path], Optional[Path]]:
    """The weight shards of a checkpoint, in order, and the index file that lists them (if any)."""
    model_dir = Path(model_dir)
    for name in (SAFETENSORS_INDEX, BIN_INDEX):
        index = model_dir / name
        if index.is_file():
            return _shards_of_index(index), index
    found = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not found:
        raise ModelNotFound(
            f"{model_dir}: no weights found (looked for {SAFETENSORS_INDEX}, {BIN_INDEX}, "
            "*.safetensors, pytorch_model*.bin).",
            "Copy the checkpoint's weight files into this folder.",
        )
    return found, None


def _shards_of_index(index: Path) -> list[Path]:
    """Shard files named by an index's weight_map, each checked to exist."""
    data = _read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise StudioError(f"{index}: has no weight_map.", _DAMAGED)
    shards = [index.parent / name for name in dict.fromkeys(str(v) for v in weight_map.values())]
    for shard in shards:
        if not shard.is_file():
            raise ModelNotFound(
                f"{shard}: missing; {index.name} lists it as a weight shard.",
                _DAMAGED,
            )
    return shards


def iter_tensors(model_dir: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) for every tensor of the checkpoint in `model_dir`, shard by shard."""
    shards, _ = weight_files(model_dir)
    for shard in shards:
        reader = _safetensors_items if shard.suffix == ".safetensors" else _bin_items
        yield from reader(shard)


def _safetensors_items(path: Path) -> Iterator[tuple[str, Any]]:
    """Tensors of one safetensors file, read one at a time."""
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise StudioError(f"{path}: cannot read safetensors file: {exc}", _DAMAGED) from None
    with handle as f:
        for name in f.keys():
            try:
                tensor = f.get_tensor(name)
            except Exception as exc:
                raise StudioError(f"{path}: cannot read tensor {name}: {exc}", _DAMAGED) from None
            yield name, tensor


def _bin_items(path: Path) -> Iterator[tuple[str, Any]]:
    """Tensors of one pytorch .bin file (weights only: no pickled code runs)."""
    import pickle

    import torch

    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # Files saved in torch's legacy (pre-zip) format cannot be memory-mapped.
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise StudioError(f"{path}: cannot read weights: {exc}", _DAMAGED) from None
    if not isinstance(state, dict):
        raise StudioError(f"{path}: does not hold a state dict.", _DAMAGED)
    yield from state.items()


def load_into(module: Any, tensors: dict, where: Path) -> None:
    """Assign `tensors` to `module` (built on the meta device); every key must match both ways."""
    try:
        result = module.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise StudioError(f"{where}: the weights do not fit the model: {exc}", _DAMAGED) from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {_first(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected {_first(result.unexpected_keys)}")
    if problems:
        raise StudioError(
            f"{where}: the weights do not match the model ({'; '.join(problems)}).",
            "The checkpoint is incomplete or of another model family; check `family:` and the files.",
        )


def _first(keys: list[str], n: int = 4) -> str:
    """A few keys and how many more there are."""
    shown = ", ".join(keys[:n])
    return f"{shown} (+{len(keys) - n} more)" if len(keys) > n else shown


def apply_generation_config(model: Any, model_dir: Path) -> None:
    """Give `model` the checkpoint's generation_config.json (eos ids etc.) when it has one."""
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return
    from transformers import GenerationConfig

    data = _read_json(path)
    if isinstance(data, dict):
        model.generation_config = GenerationConfig.from_dict(data)
