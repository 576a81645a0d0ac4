"""Find checkpoints on this machine: the Hugging Face and ModelScope caches, the lesson's share folders and
the downloads folder, each with its family, size, missing files, download state and memory fit.

Quick by design: only folder listings, config.json and safetensors headers are read, never weights."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, TextIO

from studio.errors import StudioError
from studio.hub.download_folder import MARKER, PARTIAL_DIR, is_complete

MAX_DEPTH = 5  # models--org--name/snapshots/<rev> and hub/models/<org>/<name> sit 3 deep
MAX_FOLDERS = 20_000  # a search root that is a whole home folder must still answer quickly
# Cache internals and partial downloads: never a checkpoint (the HF cache's blobs are reached through snapshots/).
_SKIP = {".git", "blobs", "refs", ".locks", ".no_exist", ".cache", ".puyu-partial", "._____temp", "__pycache__",
         "node_modules"}
_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.txt", "qwen.tiktoken",
                    "tiktoken.model", "vocab.txt")


@dataclass(frozen=True)
class Found:
    """One checkpoint folder (or GGUF file) and what can be told about it without loading it."""

    path: Path
    name: str
    root: Path  # the search folder it was found under
    family: str  # a family name, or "unknown (<reason>)"
    size: int  # bytes on disk
    files: tuple[str, ...] = ()  # weight files present
    missing: tuple[str, ...] = ()  # shards named by an index, tokenizer files, damaged files
    state: str = "complete"  # "complete" | "partial" (a download not finished) | "incomplete" (files missing)
    fits: Optional[bool] = None  # None: no plan could be made
    plan: str = ""  # the memory plan's summary line
    need: int = 0  # bytes the memory plan asks for
    gguf: bool = False
    arch: str = ""  # config.json's architectures / model_type, for an unknown family's note

    @property
    def known(self) -> bool:
        """True when a family was recognised."""
        return not self.family.startswith("unknown")

    @property
    def loadable(self) -> bool:
        """Offered for loading: a complete checkpoint of a known family (a partial download never is)."""
        return self.state == "complete" and self.known


@dataclass(frozen=True)
class Target:
    """Where a found checkpoint would load, for its memory plan."""

    device: str = "cpu"  # "cpu" | "cuda"
    dtype: str = "bfloat16"
    num_gpus: int = 1
    free: Optional[int] = None  # bytes free there; None: measured once per search


def target_for(engine_cfg, num_gpus: int = 1) -> Target:
    """Where an engine with these options would load a checkpoint (its device and dtype), for the plan."""
    import torch

    from studio.engines.base import Placement
    from studio.engines.hf_loading import pick_device, pick_dtype

    requested = getattr(engine_cfg, "device", "auto")
    try:
        device = pick_device(requested, Placement(requested, num_gpus), torch.cuda.is_available())
    except StudioError:
        device = "cpu"  # device: cuda without a GPU: the load refuses with its own message
    dtype = pick_dtype(getattr(engine_cfg, "dtype", "auto"), device)
    return Target(device, dtype, num_gpus if device == "cuda" else 1)


def default_folders(data_dir: Optional[Path] = None) -> list[Path]:
    """The caches and share folders the lesson uses, then the studio's downloads folder."""
    home = Path.home()
    hf = os.environ.get("HF_HUB_CACHE") or (Path(os.environ["HF_HOME"]) / "hub" if os.environ.get("HF_HOME")
                                             else home / ".cache" / "huggingface" / "hub")
    ms = os.environ.get("MODELSCOPE_CACHE") or home / ".cache" / "modelscope" / "hub"
    folders = [Path(hf), Path(ms), Path("/root/share/new_models"), Path("/share/new_models")]
    if data_dir is not None:
        folders.append(Path(data_dir) / "models")
    return folders


def search_folders(configured: Optional[Iterable[str]], data_dir: Optional[Path]) -> list[Path]:
    """The configured `models: search_dirs:` (with ~ and $VARS expanded), else the defaults; no repeats."""
    raw = [Path(os.path.expandvars(d)).expanduser() for d in configured] if configured else default_folders(data_dir)
    out: list[Path] = []
    for p in raw:
        if p not in out:
            out.append(p)
    return out


def find_checkpoints(folders: Iterable[Path], target: Target = Target()) -> list[Found]:
    """Every checkpoint under `folders`, by name; a folder that does not exist is skipped."""
    if target.free is None:
        from studio.engines.memory import free_bytes

        target = Target(target.device, target.dtype, target.num_gpus, free_bytes(target.device, target.num_gpus))
    found, seen = [], set()
    for root in folders:
        for path in _candidates(Path(root).expanduser(), seen):
            found.extend(inspect(path, root, target))
    return sorted(found, key=lambda f: (f.name.lower(), str(f.path)))


def _candidates(root: Path, seen: set) -> Iterable[Path]:
    """Folders under `root` that hold config.json or a .gguf file (not below one); links followed once."""
    stack, visited = [(root, 0)], 0
    while stack and visited < MAX_FOLDERS:
        folder, depth = stack.pop()
        try:
            key = (folder.stat().st_dev, folder.stat().st_ino)
            if key in seen:  # a symlink loop, or a folder reached twice through links
                continue
            seen.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        visited += 1
        names = {e.name for e in entries}
        if names & {"config.json", MARKER, PARTIAL_DIR} or any(n.endswith(".gguf") for n in names):
            yield folder
            continue
        if depth < MAX_DEPTH:
            for e in reversed(entries):
                if e.name not in _SKIP and _is_dir(e):
                    stack.append((Path(e.path), depth + 1))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; loops are caught by the inode check
    except OSError:
        return False


def display_name(path: Path, root: Path) -> str:
    """org/name from the cache layouts (models--org--name/snapshots/<rev>), else the path under the root."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts[-2:]
    if parts and parts[0].startswith("models--"):
        repo = parts[0][len("models--"):].replace("--", "/")
        snapshots = path.parent
        several = len(parts) > 2 and sum(1 for p in snapshots.iterdir() if p.is_dir()) > 1
        return f"{repo}@{parts[2][:7]}" if several else repo
    if parts and parts[0] == "models" and len(parts) > 2:  # ModelScope's hub/models/<org>/<name>
        parts = parts[1:]
    return "/".join(parts) or path.name


def inspect(path: Path, root: Path, target: Target) -> list[Found]:
    """What `path` holds: one checkpoint, or one entry per GGUF file when it has no config.json."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return [_gguf(path, path.name, root, target)]
    name, state = display_name(path, Path(root)), _download_state(path)
    if not (path / "config.json").is_file():
        ggufs = [_gguf(p, f"{name}/{p.name}", root, target) for p in sorted(path.glob("*.gguf"))]
        if ggufs or state != "partial":
            return ggufs
        # A download that has not reached config.json yet: listed, never offered.
        return [Found(path, name, Path(root), "unknown (download not finished)", _size(path), state="partial")]
    weights = sorted({p.name for g in _WEIGHT_GLOBS for p in path.glob(g) if p.is_file()})
    missing = _missing(path, weights)
    family, vision = _family(path)
    arch = "" if not family.startswith("unknown") else _arch(path)
    if state == "complete" and missing:
        state = "incomplete"
    fits, plan, need = _plan(path, None, vision, target) if weights else (None, "", 0)
    return [Found(path, name, Path(root), family, _size(path), tuple(weights), tuple(missing), state, fits, plan, need,
                  arch=arch)]


def _gguf(path: Path, name: str, root: Path, target: Target) -> Found:
    fits, plan, need = _plan(path.parent, path, False, target)
    return Found(path, name, Path(root), "hf_chat_template", _file_size(path), (path.name,), (), "complete",
                 fits, plan, need, gguf=True)


def _missing(folder: Path, weights: list[str]) -> list[str]:
    """Shards an index names but the folder lacks, damaged safetensors, no weights, no tokenizer."""
    missing: list[str] = []
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            missing.append(f"{index.name} (unreadable)")
            continue
        missing += sorted(s for s in shards if not (folder / s).is_file())
    missing += [f"{w} (truncated)" for w in weights
                if w.endswith(".safetensors") and not _whole_safetensors(folder / w)]
    if not weights:
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not any((folder / t).is_file() for t in _TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or tokenizer.model)")
    return missing


def _whole_safetensors(path: Path) -> bool:
    """True when the header parses and the file is as long as its tensors need (header only is read)."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100 * 1024 * 1024:
                return False
            header = json.loads(fh.read(size))
        end = max((int(m["data_offsets"][1]) for k, m in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + size + end
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return False


def _family(folder: Path) -> tuple[str, bool]:
    """The family auto-detection picks, or "unknown (<why>)"; and whether it takes images."""
    from studio.families.detect import resolve_family

    try:
        family = resolve_family("auto", folder)
    except StudioError as exc:
        # The message starts with the file's path: the reason is what follows it.
        reason = exc.message.split("config.json: ", 1)[-1] if "config.json: " in exc.message else exc.message
        return f"unknown ({reason.rstrip('.')})", False
    return family.name, bool(getattr(family, "accepts_images", False))


def _arch(folder: Path) -> str:
    """config.json's architectures and model_type, as one short line."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return f"{', '.join(map(str, config.get('architectures') or [])) or '-'} / {config.get('model_type') or '-'}"
    except (OSError, ValueError, AttributeError, TypeError):
        return "config.json unreadable"


def _download_state(folder: Path) -> str:
    """"partial" for a download folder not verified complete (or partial files waiting); else "complete"
    (a folder copied by hand has no download record: its files speak for it)."""
    if (folder / MARKER).exists():
        return "complete" if is_complete(folder) else "partial"
    return "partial" if (folder / PARTIAL_DIR).is_dir() else "complete"


def _plan(model_dir: Path, gguf: Optional[Path], vision: bool, target: Target) -> tuple[Optional[bool], str, int]:
    from studio.engines.memory import make_plan

    try:
        plan = make_plan(model_dir, gguf, target.dtype, target.device, target.num_gpus,
                         _context(model_dir, gguf), vision, free=target.free)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None, "", 0  # a damaged header: already listed as missing
    return plan.fits, plan.summary(), plan.need


def _context(model_dir: Path, gguf: Optional[Path]) -> int:
    """The context the load would reserve KV cache for (config.json's, as the engine does without a window)."""
    if gguf is not None:
        return 2048
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        text = config.get("llm_config") or config.get("text_config") or config
        return int(text.get("max_position_embeddings") or 2048)
    except (OSError, ValueError, AttributeError, TypeError):
        return 2048


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size  # follows the cache's links to blobs
    except OSError:
        return 0


def _size(folder: Path) -> int:
    """Bytes of the files in the folder and its sub-folders (partial downloads apart)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in _SKIP]
        total += sum(_file_size(Path(dirpath) / f) for f in filenames)
    return total


def human_size(n: int) -> str:
    """Bytes as B / KiB / MiB / GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def print_listing(found: list[Found], folders: list[Path], out: TextIO) -> None:
    """The terminal listing of `python launch.py models list`."""
    print("Searched: " + ", ".join(f"{f}{'' if Path(f).is_dir() else ' (absent)'}" for f in folders), file=out)
    if not found:
        print("No checkpoints found. Download one: python launch.py models download <repo>", file=out)
        return
    for f in found:
        fit = "fits" if f.fits else ("does not fit" if f.fits is False else "memory unknown")
        print(f"{f.name}  [{f.family}]  {human_size(f.size)}  {f.state}  {fit}", file=out)
        print(f"    {f.path}", file=out)
        if f.missing:
            print("    missing: " + ", ".join(f.missing), file=out)


def list_command(config, data_dir: Path, dirs: list[str], out: TextIO) -> int:
    """`python launch.py models list [--dir DIR]`: the listing for the chat engine's device; exit status 0."""
    folders = search_folders(dirs or config.models.search_dirs, data_dir)
    print_listing(find_checkpoints(folders, target_for(config.engines["chat"])), folders, out)
    return 0
