"""InternVL2 dynamic tiling: pick a grid of 448-px tiles for an image, crop, add a thumbnail, normalise.

Matches the official `dynamic_preprocess` + `build_transform` of InternVL2 (see families.md B):
candidate grids of 1..max tiles ordered by area, the closest aspect ratio wins, an exact tie goes
to the larger grid only when the image has more than half its pixels, BICUBIC resize to the grid,
row-major crops, a whole-image thumbnail when there is more than one tile, ImageNet mean/std.
"""

from __future__ import annotations

from typing import Any

TILE = 448
# ImageNet statistics (InternVL's train/constants.py), not the CLIP ones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def candidate_grids(max_tiles: int, min_tiles: int = 1) -> list[tuple[int, int]]:
    """(columns, rows) grids with min_tiles ≤ columns·rows ≤ max_tiles, smallest area first."""
    if max_tiles < 1 or min_tiles < 1 or min_tiles > max_tiles:
        raise ValueError(f"tile limits must satisfy 1 ≤ min ≤ max (got min={min_tiles}, max={max_tiles})")
    grids = [
        (cols, rows)
        for cols in range(1, max_tiles + 1)
        for rows in range(1, max_tiles + 1)
        if min_tiles <= cols * rows <= max_tiles
    ]
    # Only the area order matters: two grids of one area never share an aspect ratio, so the
    # order inside an area cannot change which grid wins.
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(width: int, height: int, max_tiles: int, min_tiles: int = 1, tile: int = TILE) -> tuple[int, int]:
    """The (columns, rows) grid InternVL2 tiles a width×height image into."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(max_tiles, min_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * cols * rows:
            # The official tie rule: a later (larger) grid with the same aspect ratio replaces the
            # current one only if the image would not be blown up by more than 2× in area.
            best = (cols, rows)
    return best


def tile_count(width: int, height: int, max_tiles: int, min_tiles: int = 1, use_thumbnail: bool = True) -> int:
    """How many 448-px crops (thumbnail included) the image becomes."""
    cols, rows = choose_grid(width, height, max_tiles, min_tiles)
    blocks = cols * rows
    return blocks + 1 if use_thumbnail and blocks > 1 else blocks


def dynamic_tiles(
    image: Any, max_tiles: int, min_tiles: int = 1, use_thumbnail: bool = True, tile: int = TILE
) -> list[Any]:
    """The image as PIL tiles: the grid's crops row-major, then the thumbnail when there are several."""
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    cols, rows = choose_grid(image.width, image.height, max_tiles, min_tiles, tile)
    # The official code calls resize() without a filter; Pillow's default for RGB is BICUBIC.
    resized = image.resize((tile * cols, tile * rows), Image.Resampling.BICUBIC)
    crops = [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(crops) > 1:
        crops.append(image.resize((tile, tile), Image.Resampling.BICUBIC))
    return crops


def normalise(tiles: list[Any], tile: int = TILE) -> Any:
    """Tiles → float32 tensor [n, 3, tile, tile]: /255, then ImageNet mean/std (as torchvision does)."""
    import numpy as np
    import torch
    from PIL import Image

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    out = []
    for img in tiles:
        if img.size != (tile, tile):
            # The official transform resizes every tile to 448×448 (a no-op for the crops).
            img = img.resize((tile, tile), Image.Resampling.BICUBIC)
        arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        out.append(arr.to(torch.float32).div(255).sub(mean).div(std))
    return torch.stack(out)


def pixel_values(image: Any, max_tiles: int, min_tiles: int = 1, use_thumbnail: bool = True) -> Any:
    """One image → its normalised tiles [n, 3, 448, 448]."""
    return normalise(dynamic_tiles(image, max_tiles, min_tiles, use_thumbnail))
