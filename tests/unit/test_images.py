"""Image intake: every hostile upload refused with a clear message, every survivable one normalised."""

from __future__ import annotations

import dataclasses
import io
import os
import resource
import threading
import time
import warnings

import pytest
from PIL import Image, ImageFile

from studio.errors import InputError
from studio.images import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, Intake, image_digest, load_image, normalise,
                           supported_formats, thumbnail_png, to_png_bytes)
from tests.support.hostile_images import (ACCEPTED, BLUE, GREEN, HOSTILE, RED, WHITE, bomb_png, encode,
                                          exif_jpeg, near, noise)


def refusal(data, filename, **limits) -> InputError:
    with pytest.raises(InputError) as caught:
        load_image(data, filename, **limits)
    return caught.value


# --- every case of the shared catalogue -------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_upload_is_refused_with_a_message_naming_the_file(case):
    filename, build, expected = HOSTILE[case]
    error = refusal(build(), filename)
    assert expected in str(error)
    assert error.message.startswith(filename), error.message
    assert error.hint, "every refusal says what to do"


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_survivable_upload_becomes_a_detached_rgb_image(case):
    filename, build, check = ACCEPTED[case]
    intake = load_image(build(), filename)
    check(intake)
    assert isinstance(intake, Intake) and intake.name == filename
    assert intake.image.mode == "RGB"
    assert type(intake.image) is Image.Image  # a plain, loaded image: no file object behind it
    assert intake.image.info == {}  # no EXIF (GPS …) or text chunks carried along


# --- process-wide Pillow flags set by other libraries ---------------------------------------------

FOREIGN_FLAGS = [  # what lmdeploy (LOAD_TRUNCATED_IMAGES) and many scripts (MAX_IMAGE_PIXELS = None) do
    pytest.param(True, None, id="truncated-allowed-and-no-pixel-limit"),
    pytest.param(True, Image.MAX_IMAGE_PIXELS, id="truncated-allowed"),
    pytest.param(False, None, id="no-pixel-limit"),
]


@pytest.mark.parametrize(("load_truncated", "max_pixels"), FOREIGN_FLAGS)
def test_refusals_do_not_depend_on_pillow_globals(monkeypatch, load_truncated, max_pixels):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    for case, (filename, build, expected) in HOSTILE.items():
        assert expected in str(refusal(build(), filename)), case
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == (load_truncated, max_pixels)


@pytest.mark.parametrize(("load_truncated", "max_pixels"), FOREIGN_FLAGS)
def test_acceptance_does_not_depend_on_pillow_globals(monkeypatch, load_truncated, max_pixels):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    for filename, build, check in ACCEPTED.values():
        check(load_image(build(), filename))


def test_a_stricter_global_pixel_limit_still_refuses_and_never_crashes(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # smaller than every test picture
    for filename, build, _ in HOSTILE.values():
        refusal(build(), filename)
    for case, (filename, build, check) in ACCEPTED.items():
        try:
            check(load_image(build(), filename))
        except InputError as error:  # only ever Pillow's own limit, said as such
            assert "pixel limit set for this process" in error.message, (case, error)


def test_truncated_and_bomb_refused_while_another_thread_flips_the_globals(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    cases = [HOSTILE[k] for k in ("truncated_jpeg", "truncated_png", "truncated_gif", "bomb_png")]
    uploads = [(name, build(), expected) for name, build, expected in cases]
    good = encode(noise(), "PNG")
    stop, failures = threading.Event(), []

    def flip():
        while not stop.is_set():
            ImageFile.LOAD_TRUNCATED_IMAGES = not ImageFile.LOAD_TRUNCATED_IMAGES
            Image.MAX_IMAGE_PIXELS = None if Image.MAX_IMAGE_PIXELS else 89_478_485
            time.sleep(0)

    def work():
        for _ in range(15):
            for name, data, expected in uploads:
                try:
                    load_image(data, name)
                    failures.append(f"{name} accepted")
                except InputError as error:
                    if expected not in str(error):
                        failures.append(str(error))
            if load_image(good, "good.png").image.size != (160, 120):
                failures.append("good image changed")

    flipper = threading.Thread(target=flip)
    workers = [threading.Thread(target=work) for _ in range(4)]
    flipper.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    flipper.join()
    assert failures == []


# --- limits ----------------------------------------------------------------------------------------

def test_defaults():
    assert DEFAULT_MAX_PIXELS == 40_000_000 and DEFAULT_MAX_BYTES == 20 * 1024 * 1024


def test_bomb_refused_fast_without_allocating(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    data = bomb_png()
    assert len(data) < 200_000  # ~110 KB that would decode to 900 million pixels
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = refusal(data, "bomb.png")  # from the header: memory stays flat (decoding would take GBs)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) * 1024 < 100 * 2**20
    assert "30000×30000" in error.message and "40,000,000" in error.message


def test_caller_limits_apply():
    png = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert "100×100" in refusal(png, "a.png", max_pixels=9_999).message
    assert load_image(png, "a.png", max_pixels=10_000).image.size == (100, 100)
    assert "limit" in refusal(png, "a.png", max_bytes=len(png) - 1).message
    assert load_image(png, "a.png", max_bytes=len(png)).format == "PNG"


def test_oversized_file_on_disk_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as fh:  # sparse: 1 GiB on paper, nothing written
        fh.truncate(2**30)
    assert "larger than the 20 MB limit" in refusal(path, None).message


def test_animated_gif_with_a_widened_canvas_is_checked_too():
    # a 1×1 screen whose first frame claims 20000×20000: Pillow widens the canvas while opening
    frame = Image.new("P", (1, 1))
    data = bytearray(encode(frame, "GIF"))
    at = data.index(b"\x2c")  # image descriptor: x, y, width, height (little-endian)
    data[at + 5:at + 9] = (20000).to_bytes(2, "little") * 2
    message = refusal(bytes(data), "wide.gif").message
    assert "20000×20000" in message or "too large" in message


# --- paths, names, handles -------------------------------------------------------------------------

def test_path_source_names_the_file_not_the_temp_dir(tmp_path):
    upload_dir = tmp_path / "gradio" / "0f3a9c"
    upload_dir.mkdir(parents=True)
    (upload_dir / "notes.png").write_bytes(b"just text\n")
    error = refusal(upload_dir / "notes.png", None)
    assert error.message.startswith("notes.png is not an image")
    assert str(tmp_path) not in str(error)
    (upload_dir / "photo.jpg").write_bytes(encode(noise(), "PNG"))
    intake = load_image(str(upload_dir / "photo.jpg"))
    assert (intake.name, intake.format) == ("photo.jpg", "PNG")
    assert load_image(upload_dir / "photo.jpg", "Holiday.jpg").name == "Holiday.jpg"


def test_missing_file_is_an_input_error(tmp_path):
    error = refusal(tmp_path / "gone.png", None)
    assert error.message.startswith("gone.png could not be read")


def test_hostile_names_are_cleaned_for_messages():
    assert refusal(b"", "/tmp/gradio/abc/x.png").message.startswith("x.png is empty")
    assert refusal(b"", "C:\\Users\\me\\y.png").message.startswith("y.png is empty")
    assert refusal(b"", "a\x00b\nc.png").message.startswith("a?b?c.png is empty")
    long = refusal(b"", "n" * 500 + ".png").message
    assert len(long.split(" is empty")[0]) <= 80 and long.split(" is empty")[0].endswith(".png")
    assert refusal(b"", None).message.startswith("The image is empty")


def test_no_file_descriptor_is_left_open(tmp_path):
    path = tmp_path / "anim.gif"
    path.write_bytes(ACCEPTED["animated_gif"][1]())
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        load_image(path)
        with pytest.raises(InputError):
            load_image(path, max_pixels=10)
    assert len(os.listdir("/proc/self/fd")) == before


def test_no_pillow_warnings_escape():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, build, _ in HOSTILE.values():
            with pytest.raises(InputError):
                load_image(build(), name)


def test_intake_is_frozen_and_keeps_the_stored_geometry():
    intake = load_image(exif_jpeg(6), "r.jpg")
    assert (intake.original_size, intake.original_mode, intake.image.size) == ((60, 40), "RGB", (40, 60))
    with pytest.raises(dataclasses.FrozenInstanceError):
        intake.name = "other"


def test_unsupported_format_message_lists_what_is_supported():
    error = refusal(HOSTILE["pcx"][1](), "old.pcx")
    assert "PCX" in error.message
    for shown in ("PNG", "JPEG", "GIF", "WebP", "BMP", "TIFF"):
        assert shown in error.hint and shown in supported_formats()


# --- normalise on PIL images that arrive already open ----------------------------------------------

@pytest.mark.parametrize(("mode", "value", "expected"), [
    ("YCbCr", (76, 85, 255), RED),
    ("LAB", (255, 128, 128), WHITE),
    ("HSV", (85, 255, 255), GREEN),
    ("CMYK", (255, 255, 0, 0), BLUE),
    ("RGBX", (0, 0, 255, 0), BLUE),
    ("1", 1, WHITE),
    ("L", 77, (77, 77, 77)),
    ("I;16", 32768, (128, 128, 128)),
    ("I;16B", 65535, WHITE),
    ("I;16L", 514, (2, 2, 2)),
    ("I", 16448, (64, 64, 64)),
    ("F", 200.0, (200, 200, 200)),
    ("F", 0.25, (64, 64, 64)),
    ("PA", (0, 0), WHITE),
    ("RGBa", (0, 0, 0, 0), WHITE),
])
def test_normalise_modes(mode, value, expected):
    image = Image.new(mode, (3, 2), value)
    rgb, _ = normalise(image)
    assert rgb.mode == "RGB" and rgb.size == (3, 2)
    assert near(rgb.getpixel((1, 1)), expected, 2), rgb.getpixel((1, 1))


def test_normalise_returns_a_copy_with_notes_and_refuses_unconvertible_modes():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.info["comment"] = b"private"
    rgb, notes = normalise(image, name="drop.png")
    assert rgb is not image and rgb.info == {} and rgb.getpixel((0, 0)) == WHITE
    assert notes == ["drop.png has transparent areas; they are shown on a white background."]
    broken = Image.new("RGB", (4, 2), RED)
    broken.info["exif"] = b"Exif\x00\x00junk"  # malformed EXIF: pixels kept as stored, and said so
    rgb, notes = normalise(broken, name="cam.jpg")
    assert rgb.size == (4, 2) and "EXIF orientation could not be read" in notes[0]
    assert normalise(Image.new("RGBA", (2, 2), RED + (255,)))[1] == []  # opaque alpha: nothing to say
    with pytest.raises(InputError, match="colour mode La"):
        normalise(Image.new("La", (2, 2)), name="odd.png")


def test_normalise_applies_exif_to_a_lazily_opened_file():
    with Image.open(io.BytesIO(exif_jpeg(8))) as opened:
        rgb, _ = normalise(opened)
    assert rgb.size == (40, 60) and near(rgb.getpixel((4, 55)), RED)


def test_grey16_is_scaled_by_bit_depth_not_by_image_maximum():
    dark = Image.new("I;16", (2, 1))
    dark.putpixel((1, 0), 1000)
    assert normalise(dark)[0].getpixel((1, 0)) == (4, 4, 4)  # not stretched to white


# --- thumbnails, PNG bytes, digests ----------------------------------------------------------------

def test_thumbnail_fits_the_box_and_never_enlarges():
    with Image.open(io.BytesIO(thumbnail_png(Image.new("RGB", (1000, 500), RED)))) as thumb:
        assert (thumb.format, thumb.size, thumb.mode) == ("PNG", (256, 128), "RGB")
    with Image.open(io.BytesIO(thumbnail_png(Image.new("RGB", (1000, 500), RED), max_side=64))) as thumb:
        assert thumb.size == (64, 32)
    with Image.open(io.BytesIO(thumbnail_png(Image.new("RGB", (10, 30), RED)))) as thumb:
        assert thumb.size == (10, 30)
    with Image.open(io.BytesIO(thumbnail_png(Image.new("RGBA", (8, 8), (0, 0, 0, 0))))) as thumb:
        assert thumb.mode == "RGB" and thumb.getpixel((0, 0)) == WHITE
    with pytest.raises(ValueError):
        thumbnail_png(Image.new("RGB", (8, 8)), max_side=0)


def test_png_bytes_round_trip_without_metadata():
    image = load_image(exif_jpeg(1), "a.jpg").image
    with Image.open(io.BytesIO(to_png_bytes(image))) as back:
        assert back.format == "PNG" and back.tobytes() == image.tobytes()
        assert dict(back.getexif()) == {} and "exif" not in back.info


def test_digest_depends_on_pixels_and_size_only():
    picture = noise((40, 30))
    from_png = load_image(encode(picture, "PNG"), "a.png").image
    from_bmp = load_image(encode(picture, "BMP"), "b.bmp").image
    assert image_digest(from_png) == image_digest(from_bmp) == image_digest(picture)
    assert len(image_digest(picture)) == 64
    changed = picture.copy()
    changed.putpixel((0, 0), (1, 2, 3))
    assert image_digest(changed) != image_digest(picture)
    assert image_digest(Image.new("RGB", (1, 4), RED)) != image_digest(Image.new("RGB", (2, 2), RED))
    assert image_digest(Image.new("RGBA", (2, 2), (0, 0, 0, 0))) == image_digest(Image.new("RGB", (2, 2), WHITE))
