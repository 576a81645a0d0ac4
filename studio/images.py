"""Safe image intake: byte and pixel limits before decoding, truncation checks, RGB/EXIF normalisation."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from studio.errors import InputError

# 40 MP covers 12–24 MP phone photos and 24–36 MP camera photos (a 48 MP full-resolution phone
# photo is over it). Decoded it is ~120 MB as RGB and ~160 MB as RGBA, with a copy or two during
# normalisation: a bounded cost per upload. Vision models downscale to a few 448-px tiles anyway.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

# Formats we decode (Pillow name, name shown to users). The rest of Pillow's readers are refused on
# purpose: EPS runs Ghostscript, TGA and others have no signature and "recognise" random bytes, ICO
# decodes its pixels while opening (before our size check), PPM's signature matches plain text.
_FORMATS = (("PNG", "PNG"), ("JPEG", "JPEG"), ("GIF", "GIF"), ("WEBP", "WebP"), ("BMP", "BMP"),
            ("TIFF", "TIFF"), ("AVIF", "AVIF"))
_ANIMATION_FORMATS = ("GIF", "PNG", "WEBP", "AVIF")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255, 255)
_RETRY = "Open it in an image editor, save it again (PNG or JPEG), and upload that file."
_SMALLER = "Resize it (for example to 4000 pixels on the longest side) and upload it again."

Source = bytes | bytearray | memoryview | str | Path


@dataclass(frozen=True)
class Intake:
    """An accepted image: RGB, fully loaded, detached from its file, with remarks for the user."""

    image: Image.Image
    notes: tuple[str, ...]
    name: str
    format: str
    original_size: tuple[int, int]  # as stored in the file, before EXIF rotation
    original_mode: str


class _Source(io.BytesIO):
    """The upload in memory; notes a read that finds the end of the data while `armed`.

    Pillow treats a short file according to the process-wide `ImageFile.LOAD_TRUNCATED_IMAGES`
    (lmdeploy sets it at import): when set, a cut-off file decodes "fine", padded with grey or black.
    A complete file never asks for bytes past its end while its pixels decode (decoders stop at their
    end marker), so an empty read then means truncated, whatever the flag says and without touching
    it (setting a module global would race with other threads).
    """

    armed = False
    ran_dry = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if self.armed and not data and size != 0:
            self.ran_dry = True
        return data


def load_image(source: Source, name: str | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Intake:
    """Decode an upload (bytes or a path) safely into an RGB `Intake`, or raise InputError saying why not."""
    label = _label(source, name)
    data = _read(source, label, max_bytes)
    with _Source(data) as src:
        im = _identify(src, data, label)
        try:
            return _decode(im, src, data, label, max_pixels)
        finally:
            im.close()


def normalise(image: Image.Image, *, name: str = "The image") -> tuple[Image.Image, list[str]]:
    """An upright RGB copy of an open PIL image (EXIF rotation applied, transparency on white), plus notes."""
    notes: list[str] = []
    image.load()
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF is common and harmless: keep the pixels as stored
        upright = image.copy()
        notes.append(f"{name}: its EXIF orientation could not be read; it is shown as stored.")
    try:
        rgb, see_through = _to_rgb(upright)
    except (ValueError, OSError) as exc:
        raise InputError(f"{name} uses the colour mode {image.mode}, which cannot be converted to RGB.",
                         _RETRY) from exc
    if see_through:
        notes.append(f"{name} has transparent areas; they are shown on a white background.")
    rgb.info = {}  # detached: no EXIF (GPS …), ICC or text chunks travel on with the pixels
    return rgb, notes


def thumbnail_png(image: Image.Image, max_side: int = 256) -> bytes:
    """PNG bytes of a copy scaled to fit `max_side` × `max_side` (never enlarged)."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    thumb = _rgb_of(image).copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return to_png_bytes(thumb)


def to_png_bytes(image: Image.Image) -> bytes:
    """The image (as RGB) encoded as PNG, without metadata."""
    buf = io.BytesIO()
    _rgb_of(image).save(buf, format="PNG")
    return buf.getvalue()


def image_digest(image: Image.Image) -> str:
    """sha256 hex of the size and RGB pixels: equal for equal pictures, whatever file they came from."""
    rgb = _rgb_of(image)
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def supported_formats() -> list[str]:
    """User-facing names of the formats this Pillow build can decode for us."""
    Image.init()
    return [shown for fmt, shown in _FORMATS if fmt in Image.OPEN]


# --- intake steps ---------------------------------------------------------------------------------

def _label(source: Source, name: str | None) -> str:
    """The file's own name for messages: never a temp directory, no control characters, not too long."""
    raw = name or (str(source) if isinstance(source, (str, Path)) else "")
    raw = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "The image"
    clean = "".join(ch if ch.isprintable() else "?" for ch in raw).strip() or "The image"
    return clean if len(clean) <= 80 else clean[:60] + "…" + clean[-16:]


def _read(source: Source, label: str, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size = len(data)
    else:
        try:
            with open(source, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                # Read at most one byte past the limit, whatever the size on disk claims.
                data = fh.read(max_bytes + 1) if size <= max_bytes else b""
        except OSError as exc:
            raise InputError(f"{label} could not be read ({exc.strerror or exc}).", "Choose the file again.") from exc
        size = max(size, len(data))
    if size > max_bytes:
        raise InputError(f"{label} is larger than the {max_bytes / 2**20:g} MB limit for images "
                         f"({size / 2**20:.1f} MB).",
                         "Save it smaller (resize it or use JPEG) and upload it again.")
    if not data:
        raise InputError(f"{label} is empty (0 bytes).", "Choose the file again; the upload may not have finished.")
    return data


def _identify(src: _Source, data: bytes, label: str) -> Image.Image:
    """Parse the header only, through Pillow's plugin registry but not through `Image.open`.

    `Image.open` guards against bombs with the process-wide `Image.MAX_IMAGE_PIXELS`, which other
    code may have set to None. Running the registered header parsers ourselves (the same loop, over
    our format list) lets `_decode` compare the declared size with our own limit before any pixel
    is decoded, whatever that global holds, and without writing to it."""
    Image.init()
    allowed = dict(_FORMATS)
    prefix = data[:16]
    damaged = foreign = ""
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        try:
            result = accept(prefix) if accept is not None else False
            matches = bool(result) and not isinstance(result, str)  # a str is "recognised, no codec"
        except Exception:  # some signature checks index past a short prefix
            matches = False
        if not matches:
            continue
        if fmt not in allowed:
            foreign = foreign or fmt
            continue
        src.seek(0)
        src.armed, src.ran_dry = True, False
        try:
            return factory(src, "")
        except Image.DecompressionBombError as exc:
            raise InputError(f"{label} declares an image too large to decode.", _SMALLER) from exc
        except Exception:  # a signature that matched but a header that did not parse: keep looking
            # Header fields are read with exact sizes, so stopping at the end of the data means the
            # file was cut short; WebP and AVIF read the whole file at once and are judged apart.
            slurps = fmt in ("WEBP", "AVIF")
            cut = src.ran_dry or (src.tell() >= len(data) and not slurps) or _declared_longer(data)
            damaged = damaged or ("truncated" if cut else allowed[fmt])
        finally:
            src.armed = False
    formats = ", ".join(supported_formats())
    if damaged == "truncated":
        raise _truncated(label)
    if damaged:
        raise InputError(f"{label} has a damaged {damaged} header and cannot be read.", _RETRY)
    if foreign:
        raise InputError(f"{label} is in {foreign} format, which is not supported.",
                         f"Convert it to one of: {formats}.")
    kind = _looks_like(data)
    raise InputError(f"{label} is not an image" + (f": it looks like {kind}." if kind else
                                                      " in any format we can read."),
                     f"Upload a picture in one of these formats: {formats}.")


def _decode(im: Image.Image, src: _Source, data: bytes, label: str, max_pixels: int) -> Intake:
    fmt = im.format or "image"
    _check_pixels(im.size, label, max_pixels)
    original_size, original_mode = im.size, im.mode
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # a broken later frame: the first may still be fine
        frames = 1
    src.armed, src.ran_dry = True, False
    try:
        im.seek(0)
        im.load()
    except Image.DecompressionBombError as exc:
        # Some plugins (GIF, TIFF) also apply Pillow's global limit while decoding: a stricter value
        # set elsewhere in the process still refuses; None or a looser one never loosens ours.
        width, height = im.size
        raise InputError(f"{label} ({width}×{height} pixels) is over the pixel limit set for this process.",
                         _SMALLER) from exc
    except Exception as exc:  # corrupt input makes Pillow raise anything from OSError to struct.error
        if src.ran_dry or _declared_longer(data, im):
            raise _truncated(label) from exc
        raise InputError(f"{label} is damaged: its {fmt} data cannot be decoded.", _RETRY) from exc
    finally:
        src.armed = False
    if src.ran_dry:
        raise _truncated(label)
    _check_pixels(im.size, label, max_pixels)  # a GIF frame may have widened the canvas while loading
    rgb, notes = normalise(im, name=label)
    if frames > 1:
        notes.insert(0, f"{label} is animated ({frames} frames); using the first frame."
                     if fmt in _ANIMATION_FORMATS else f"{label} contains {frames} images; using the first.")
    return Intake(rgb, tuple(notes), label, fmt, original_size, original_mode)


def _check_pixels(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"{label} has no pixels ({width}×{height}).", _RETRY)
    if width * height > max_pixels:
        raise InputError(f"{label} is {width}×{height} pixels ({width * height:,}); the limit is "
                         f"{max_pixels:,} pixels.", _SMALLER)


def _truncated(label: str) -> InputError:
    return InputError(f"{label} is truncated: the file ends before the picture does, so it cannot be decoded.",
                      "The upload or download was probably cut short; upload the complete file.")


def _declared_longer(data: bytes, im: Image.Image | None = None) -> bool:
    """Whether the file's own length fields point past its end: for the formats whose readers take the
    whole file at once (WebP's RIFF size, AVIF's top-level boxes, libtiff's strips and tiles)."""
    if data[:4] == b"RIFF":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if data[4:8] == b"ftyp":
        pos = 0
        while 0 <= pos <= len(data) - 8:
            size = int.from_bytes(data[pos:pos + 4], "big")
            if size == 1:  # 64-bit size follows the type
                size = int.from_bytes(data[pos + 8:pos + 16], "big")
            pos = len(data) if size == 0 else pos + max(size, 8)
        return pos > len(data)
    if data[:4] in (b"II*\0", b"MM\0*"):  # classic TIFF: does the first directory fit?
        order = "little" if data[:2] == b"II" else "big"
        ifd = int.from_bytes(data[4:8], order)
        entries = int.from_bytes(data[ifd:ifd + 2], order) if ifd + 2 <= len(data) else 1 << 16
        if ifd + 2 + 12 * entries + 4 > len(data):
            return True
    tags = getattr(im, "tag_v2", {})
    for offsets, counts in ((273, 279), (324, 325)):  # StripOffsets/ByteCounts, TileOffsets/ByteCounts
        starts, lengths = tags.get(offsets), tags.get(counts)
        if starts is not None and lengths is not None:
            pairs = zip(*(v if isinstance(v, tuple) else (v,) for v in (starts, lengths)))
            return any(start + length > len(data) for start, length in pairs)
    return False


def _looks_like(data: bytes) -> str:
    """A guess at what a non-image upload is, so the message can say so."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if b"<svg" in head:
        return "an SVG drawing (vector images are not supported)"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "an HTML page"
    text = b"\x00" not in head and head.decode("utf-8", "replace").count("\ufffd") <= 3  # a cut multibyte char
    return "a text file" if text else ""


# --- colour modes ---------------------------------------------------------------------------------

def _rgb_of(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else _to_rgb(image)[0]


def _to_rgb(image: Image.Image) -> tuple[Image.Image, bool]:
    """RGB version of any mode, and whether visible transparency was flattened onto white."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # Pillow's own I;16 → RGB clips everything above 255 to white (Pillow#2574). Scale by the bit
        # depth instead (65535 → 255), never by the image's maximum, so a dark scan stays dark.
        # "I" is treated as 16-bit too: that is what PNG, TIFF and PGM put there; larger values clip.
        grey = image.convert("I").point(lambda v: v * (255 / 65535) + 0.5)
        return grey.convert("L").convert("RGB"), False
    if mode == "F":
        # Floats come as 0..1 (normalised) or as 0..255; other ranges clip.
        low, high = image.getextrema()
        scale = 255 if 0 <= low and high <= 1 else 1
        return image.point(lambda v: v * scale + 0.5).convert("L").convert("RGB"), False
    if mode in _ALPHA_MODES or image.has_transparency_data:
        # Composite on white: convert("RGB") would just drop alpha, leaving whatever colour the
        # transparent pixels store (usually black), which models then "see".
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, _WHITE)
        flat.alpha_composite(rgba)
        return flat.convert("RGB"), rgba.getchannel("A").getextrema()[0] < 255
    if mode == "RGB":
        return image, False
    return image.convert("RGB"), False  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX
