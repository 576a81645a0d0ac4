"""Image uploads that must be survived, built in memory on demand.

HOSTILE: name -> (filename, bytes_factory, substring the refusal message must contain)
ACCEPTED: name -> (filename, bytes_factory, check(intake) that asserts what the upload became)

Unit tests send each case through `studio.images.load_image`; end-to-end tests can upload the same
bytes under the same filename through the running app and assert the message.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
FRAME_COLOURS = [RED, GREEN, BLUE, (255, 255, 0), (0, 255, 255), (255, 0, 255)] * 2


# --- building blocks ------------------------------------------------------------------------------

def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """`image` saved as `fmt` into bytes."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def noise(size=(160, 120), seed=7) -> Image.Image:
    """A random RGB picture: compresses badly, so its pixel data fills most of the file."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width=30000, height=30000) -> bytes:
    """A complete, valid 1-bit PNG of `width`×`height` zeros: ~110 KB on disk, 900 MB once decoded."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits, all zero
    packer = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 20) // len(row))
    block = packer.compress(row * rows_per_block)
    parts = [block] * (height // rows_per_block)
    parts += [packer.compress(row * (height % rows_per_block)), packer.flush()]
    idat = b"".join(parts)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def bomb_jpeg(width=30000, height=30000) -> bytes:
    """A small JPEG whose frame header (SOF0) claims `width`×`height`."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_gif(width=30000, height=30000) -> bytes:
    """A GIF with a `width`×`height` logical screen holding one 1×1 frame."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def half(data: bytes) -> bytes:
    """The first half of `data` (an upload interrupted midway)."""
    return data[:len(data) // 2]


def without_tail(data: bytes, count: int) -> bytes:
    """`data` with its last `count` bytes cut off (an interrupted upload)."""
    return data[:-count]


def _two_markers() -> Image.Image:
    """60×40 blue picture, red block top-left, green block top-right: any rotation or mirror is visible."""
    image = Image.new("RGB", (60, 40), BLUE)
    image.paste(RED, (0, 0, 16, 16))
    image.paste(GREEN, (44, 0, 60, 16))
    return image


def exif_jpeg(orientation: int) -> bytes:
    """The two-marker picture stored as is, with EXIF Orientation = `orientation`."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(_two_markers(), "JPEG", quality=95, exif=exif)


def animation(fmt: str, frames: int, **params) -> bytes:
    """A `frames`-frame animation, frame k a solid FRAME_COLOURS[k] (frame 0 red)."""
    images = [Image.new("RGB", (24, 16), FRAME_COLOURS[k]) for k in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100, loop=0, **params)


def grey16(values, fmt="PNG", mode="I;16") -> bytes:
    """A one-row 16-bit greyscale image holding `values`."""
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return encode(image, fmt)


def one_row(mode: str, values, fmt="TIFF") -> bytes:
    """A one-row image in `mode` holding `values`."""
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return encode(image, fmt)


def rgba_transparent_corner() -> bytes:
    """Red RGBA, top-left 8×8 fully transparent *black*, one half-transparent blue pixel at (20, 4)."""
    image = Image.new("RGBA", (32, 32), RED + (255,))
    image.paste((0, 0, 0, 0), (0, 0, 8, 8))
    image.putpixel((20, 4), (0, 0, 255, 128))
    return encode(image, "PNG")


def la_transparent_corner() -> bytes:
    """Grey 50 LA image, top-left 8×8 fully transparent."""
    image = Image.new("LA", (32, 32), (50, 255))
    image.paste((0, 0), (0, 0, 8, 8))
    return encode(image, "PNG")


def palette_transparent_corner(alpha_palette: bool = False) -> bytes:
    """P image: index 0 black (transparent), index 1 green; optionally index 2 red at alpha 128."""
    image = Image.new("P", (32, 32), 1)
    image.putpalette(bytes([0, 0, 0, 0, 255, 0, 255, 0, 0]))
    image.paste(0, (0, 0, 8, 8))
    if alpha_palette:
        image.putpixel((20, 4), 2)
        return encode(image, "PNG", transparency=bytes([0, 255, 128]))
    return encode(image, "PNG", transparency=0)


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG of pure red (C=0 M=100% Y=100% K=0)."""
    return encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)


def huge_bytes() -> bytes:
    """A valid PNG padded past 20 MiB with trailing bytes (decoders ignore them; the size limit must not)."""
    return encode(Image.new("RGB", (8, 8), RED), "PNG") + bytes(20 * 1024 * 1024 + 1)


# --- checks ---------------------------------------------------------------------------------------

def near(actual, expected, tolerance=40) -> bool:
    """Colours equal within `tolerance` per channel (JPEG is lossy)."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def _rgb(intake, size=None):
    assert intake.image.mode == "RGB", intake.image.mode
    if size is not None:
        assert intake.image.size == size, intake.image.size
    return intake.image


def check_pixels(*expected, size=None, tolerance=0, fmt=None, mode=None):
    """A check that the intake is RGB and pixel (x, y) is near colour c for each ((x, y), c)."""
    def check(intake):
        image = _rgb(intake, size)
        for xy, colour in expected:
            assert near(image.getpixel(xy), colour, tolerance), (xy, image.getpixel(xy), colour)
        assert fmt is None or intake.format == fmt, intake.format
        assert mode is None or intake.original_mode == mode, intake.original_mode
    return check


def check_animation(frames: int):
    """A check that only frame 0 (red) was used and the note says so."""
    def check(intake):
        assert _rgb(intake).getpixel((0, 0)) == RED
        assert any(f"animated ({frames} frames)" in n and "first frame" in n for n in intake.notes), intake.notes
    return check


# Where the red (top-left) and green (top-right) markers of the stored picture end up once the EXIF
# orientation is applied, read from the EXIF 2.3 definitions of the eight values.
_UPRIGHT = {1: ("tl", "tr"), 2: ("tr", "tl"), 3: ("br", "bl"), 4: ("bl", "br"),
            5: ("tl", "bl"), 6: ("tr", "br"), 7: ("br", "tr"), 8: ("bl", "tl")}


def check_orientation(orientation: int):
    """A check that the picture is upright: size swapped for 5–8, markers in the right corners."""
    size = (60, 40) if orientation <= 4 else (40, 60)
    corners = {"tl": (4, 4), "tr": (size[0] - 5, 4), "bl": (4, size[1] - 5), "br": (size[0] - 5, size[1] - 5)}
    red, green = _UPRIGHT[orientation]
    return check_pixels((corners[red], RED), (corners[green], GREEN), size=size, tolerance=40)


def check_note(fragment: str, then: Callable | None = None):
    """A check that some note contains `fragment` (and then `then`)."""
    def check(intake):
        assert any(fragment in n for n in intake.notes), intake.notes
        if then:
            then(intake)
    return check


# --- the cases ------------------------------------------------------------------------------------

def _png():
    return encode(noise(), "PNG")


def _jpeg():
    return encode(noise(), "JPEG", quality=90)


def _eps():
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def _corrupt_png_header():
    data = bytearray(_png())
    data[16:20] = b"\xff\xff\xff\xff"  # IHDR width, without fixing the chunk CRC
    return bytes(data)


HOSTILE: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zero_byte": ("empty.png", lambda: b"", "empty"),
    "text_as_png": ("notes.png", lambda: b"Shopping list:\n- eggs\n- milk\n" * 4, "not an image"),
    "html": ("page.html", lambda: b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
             "not an image"),
    "html_as_jpg": ("photo.jpg", lambda: b"<html><script>alert(1)</script></html>", "not an image"),
    "pdf": ("scan.pdf", lambda: b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", "not an image"),
    "svg": ("logo.svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
            "SVG"),
    "random_bytes": ("blob.png", lambda: random.Random(3).randbytes(4096), "not an image"),
    "eps": ("figure.eps", _eps, "not supported"),
    "pcx": ("old.pcx", lambda: encode(Image.new("RGB", (8, 8), RED), "PCX"), "not supported"),
    "ico": ("favicon.ico", lambda: encode(Image.new("RGBA", (32, 32), RED + (255,)), "ICO"), "not supported"),
    "png_signature_only": ("stub.png", lambda: b"\x89PNG\r\n\x1a\n", "truncated"),
    "png_header_cut": ("stub2.png", lambda: _png()[:40], "truncated"),
    "jpeg_header_cut": ("stub.jpg", lambda: _jpeg()[:100], "truncated"),
    "corrupt_png_header": ("bad.png", _corrupt_png_header, "damaged"),
    "truncated_jpeg": ("cut.jpg", lambda: without_tail(_jpeg(), 128), "truncated"),
    "truncated_jpeg_half": ("half.jpg", lambda: half(_jpeg()), "truncated"),
    "truncated_png": ("cut.png", lambda: half(_png()), "truncated"),
    "truncated_png_tail": ("cut-tail.png", lambda: without_tail(_png(), 128), "truncated"),
    "truncated_gif": ("cut.gif", lambda: half(encode(noise(), "GIF")), "truncated"),
    "truncated_bmp": ("cut.bmp", lambda: without_tail(encode(noise(), "BMP"), 128), "truncated"),
    "truncated_tiff": ("cut.tif", lambda: without_tail(encode(noise(), "TIFF"), 128), "truncated"),
    "truncated_webp": ("cut.webp", lambda: half(encode(noise(), "WEBP")), "truncated"),
    "truncated_webp_tail": ("cut-tail.webp", lambda: without_tail(encode(noise(), "WEBP"), 128), "truncated"),
    "bomb_png": ("bomb.png", bomb_png, "30000×30000"),
    "bomb_jpeg": ("bomb.jpg", bomb_jpeg, "30000×30000"),
    "bomb_gif": ("bomb.gif", bomb_gif, "30000×30000"),
    "huge_bytes": ("huge.png", huge_bytes, "larger than the 20 MB limit"),
}

_MARKS = ((4, 4), (27, 27))
ACCEPTED: dict[str, tuple[str, Callable[[], bytes], Callable]] = {
    "png": ("plain.png", lambda: encode(Image.new("RGB", (32, 32), RED), "PNG"),
            check_pixels(((0, 0), RED), size=(32, 32), fmt="PNG")),
    "png_named_jpg": ("photo.jpg", lambda: encode(Image.new("RGB", (32, 32), GREEN), "PNG"),
                      check_pixels(((0, 0), GREEN), fmt="PNG")),
    "jpeg_named_png": ("photo.png", lambda: encode(Image.new("RGB", (32, 32), BLUE), "JPEG"),
                       check_pixels(((5, 5), BLUE), tolerance=8, fmt="JPEG")),
    "jpeg_progressive": ("prog.jpg", lambda: encode(_two_markers(), "JPEG", progressive=True, quality=95),
                         check_orientation(1)),
    "jpeg_trailing_bytes": ("tail.jpg", lambda: encode(_two_markers(), "JPEG", quality=95) + b"\0junk" * 20,
                            check_orientation(1)),
    "gif": ("still.gif", lambda: encode(Image.new("RGB", (16, 16), RED), "GIF"), check_pixels(((3, 3), RED))),
    "webp_lossy": ("photo.webp", lambda: encode(Image.new("RGB", (32, 32), RED), "WEBP", quality=90),
                   check_pixels(((5, 5), RED), tolerance=12, fmt="WEBP")),
    "bmp": ("old.bmp", lambda: encode(Image.new("RGB", (17, 9), BLUE), "BMP"), check_pixels(((16, 8), BLUE))),
    "tiff_lzw": ("scan.tif", lambda: encode(Image.new("RGB", (20, 20), GREEN), "TIFF", compression="tiff_lzw"),
                 check_pixels(((19, 19), GREEN), fmt="TIFF")),
    "mode_1": ("bw.png", lambda: encode(Image.new("1", (8, 8), 1), "PNG"), check_pixels(((0, 0), WHITE))),
    "grey_jpeg": ("grey.jpg", lambda: encode(Image.new("L", (16, 16), 100), "JPEG"),
                  check_pixels(((3, 3), (100, 100, 100)), tolerance=3, mode="L")),
    "cmyk_jpeg": ("print.jpg", cmyk_jpeg, check_pixels(((5, 5), RED), tolerance=30, mode="CMYK")),
    "cmyk_tiff": ("print.tif", lambda: encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF"),
                  check_pixels(((5, 5), RED), mode="CMYK")),
    "lab_tiff": ("lab.tif", lambda: encode(Image.new("LAB", (8, 8), (255, 128, 128)), "TIFF"),
                 check_pixels(((1, 1), WHITE), tolerance=3, mode="LAB")),
    "rgba_transparent_corner": ("cutout.png", rgba_transparent_corner,
                                check_note("white background", check_pixels(
                                    ((0, 0), WHITE), ((7, 7), WHITE), ((20, 20), RED), ((20, 4), (127, 127, 255)),
                                    tolerance=1, mode="RGBA"))),
    "la_transparent_corner": ("grey-cutout.png", la_transparent_corner,
                              check_pixels(((0, 0), WHITE), ((20, 20), (50, 50, 50)), mode="LA")),
    "p_transparent_index": ("palette.png", lambda: palette_transparent_corner(False),
                            check_pixels(((0, 0), WHITE), ((20, 20), GREEN), mode="P")),
    "p_alpha_palette": ("palette-alpha.png", lambda: palette_transparent_corner(True),
                        check_pixels(((0, 0), WHITE), ((20, 20), GREEN), ((20, 4), (255, 127, 127)),
                                     tolerance=1, mode="P")),
    "grey16_png": ("depth.png", lambda: grey16([0, 32768, 65535]),
                   check_pixels(((0, 0), (0, 0, 0)), ((1, 0), (128, 128, 128)), ((2, 0), WHITE))),
    "grey16_png_dark": ("dark.png", lambda: grey16([0, 257, 1000, 2570]),
                        check_pixels(((1, 0), (1, 1, 1)), ((2, 0), (4, 4, 4)), ((3, 0), (10, 10, 10)))),
    "grey16b_tiff": ("depth-be.tif", lambda: grey16([0, 32768, 65535], "TIFF", "I;16B"),
                     check_pixels(((1, 0), (128, 128, 128)), ((2, 0), WHITE))),
    "int32_tiff": ("int.tif", lambda: one_row("I", [0, 32768, 65535]),
                   check_pixels(((1, 0), (128, 128, 128)), ((2, 0), WHITE), mode="I")),
    "float_tiff": ("float.tif", lambda: one_row("F", [0.0, 0.5, 1.0]),
                   check_pixels(((0, 0), (0, 0, 0)), ((1, 0), (128, 128, 128)), ((2, 0), WHITE), mode="F")),
    **{f"exif_orientation_{k}": (f"rotated-{k}.jpg", (lambda k=k: exif_jpeg(k)), check_orientation(k))
       for k in range(1, 9)},
    "animated_gif": ("anim.gif", lambda: animation("GIF", 12), check_animation(12)),
    "animated_webp": ("anim.webp", lambda: animation("WEBP", 3, lossless=True), check_animation(3)),
    "apng": ("anim.png", lambda: animation("PNG", 4), check_animation(4)),
    "multipage_tiff": ("pages.tif", lambda: animation("TIFF", 3), check_note("contains 3 images")),
}
