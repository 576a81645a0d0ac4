"""Article exports re-opened: the Markdown zip, the single-file HTML, the workbook, and safe names."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from studio.core.article import ArticleBlock, ArticleDraft, ArticleImage, ArticleParams
from studio.exports import article_html, article_markdown_zip, article_xlsx, export_path, safe_stem
from studio.exports.article_html import sanitise
from studio.exports.article_markdown import markdown_paragraph
from studio.exports.filenames import ascii_slug

TITLE = '=HYPERLINK("http://x")'
XSS = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"
CREATED, UPDATED = 1_741_064_767.0, 1_741_068_367.0  # 2025-03-04 05:06:07 and 06:06:07 UTC


def _images(folder: Path) -> dict[str, Path]:
    """Real pictures on disk: PNG, JPEG, RGBA PNG, a 3000×2000 JPEG, a noisy PNG, a broken and a deleted one."""
    paths = {name: folder / name for name in
             ("red.png", "photo.jpg", "rgba.png", "big.jpg", "noise.png", "broken.png", "gone.jpg")}
    Image.new("RGB", (64, 48), (200, 30, 30)).save(paths["red.png"])
    Image.linear_gradient("L").convert("RGB").resize((120, 80)).save(paths["photo.jpg"], quality=90)
    Image.new("RGBA", (50, 50), (0, 0, 255, 0)).save(paths["rgba.png"])
    big = Image.merge("RGB", [Image.radial_gradient("L").resize((3000, 2000))] * 3)
    big.save(paths["big.jpg"], quality=80)
    Image.merge("RGB", [Image.effect_noise((400, 400), 80)] * 3).save(paths["noise.png"])
    paths["broken.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("RGB", (10, 10)).save(paths["gone.jpg"])
    paths["gone.jpg"].unlink()  # placed while it existed, deleted before the export
    return paths


def make_draft(folder: Path) -> ArticleDraft:
    p = _images(folder)

    def img(name: str, caption: str) -> ArticleImage:
        return ArticleImage(str(p[name]), caption)

    blocks = [
        ArticleBlock("Intro with **bold** and a list:\n\n- one\n- two", img("red.png", "a red boat")),
        ArticleBlock(XSS, img("photo.jpg", '<b>photo</b> & "quotes"')),
        ArticleBlock("=1+1", img("rgba.png", "+cmd")),
        ArticleBlock("+cmd", img("big.jpg", "-2")),
        ArticleBlock("-2", img("gone.jpg", "a lost picture")),
        ArticleBlock("@SUM(A1)"),
        ArticleBlock("http://example.com and [link](https://evil.example/x) ![remote](http://tracker.example/p.png)",
                     img("noise.png", "@SUM(A1)")),
        ArticleBlock("```python\nprint('<b>')\n"),  # the model stopped inside a code fence
        ArticleBlock("中文段落 🐱 with emoji", img("red.png", "http://example.com")),
        ArticleBlock("last", img("broken.png", "")),
    ]
    return ArticleDraft(title=TITLE, instruction="=cmd|' /C calc'!A0", blocks=blocks,
                        params=ArticleParams(beams=2, seed=8909, image_count=None), engine="hf",
                        model="internlm-xcomposer2-vl-1_8b", created=CREATED, updated=UPDATED)


@pytest.fixture
def draft(tmp_path: Path) -> ArticleDraft:
    return make_draft(tmp_path)


def present(draft: ArticleDraft) -> list[int]:
    """Indexes of blocks whose picture can be exported."""
    return [i for i, b in enumerate(draft.blocks)
            if b.image is not None and not b.image.path.endswith(("gone.jpg", "broken.png"))]


def check_warnings(warnings: tuple[str, ...]) -> None:
    assert len(warnings) == 2
    assert warnings[0] == "The image for “a lost picture” (gone.jpg) is missing on disk; exported without it."
    assert warnings[1].startswith("The image after paragraph 10 (broken.png) could not be read")
    assert not any("/" in w for w in warnings)  # file names only: the data folder never leaks


def _inline_tokens(text: str) -> list:
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").parse(text)
    return [child for t in tokens if t.type == "inline" for child in t.children]


# -- Markdown zip -----------------------------------------------------------------------------


def test_markdown_zip_references_resolve(draft):
    result = article_markdown_zip(draft)
    assert result.filename == "HYPERLINK-http-x.zip"
    check_warnings(result.warnings)
    archive = zipfile.ZipFile(io.BytesIO(result.data))
    names = archive.namelist()
    assert len(names) == len(set(names)) and "article.md" in names
    for name in names:
        assert ".." not in name and not name.startswith("/") and "\\" not in name and name.isascii()
    text = archive.read("article.md").decode("utf-8")
    refs = [t.attrs["src"] for t in _inline_tokens(text) if t.type == "image"]
    assert len(refs) == len(present(draft)) and set(refs) == set(names) - {"article.md"}
    assert refs[0] == "images/01-a-red-boat.png"
    for ref in refs:
        with Image.open(archive.open(ref)) as im:
            im.verify()
    sizes = {ref: Image.open(archive.open(ref)).size for ref in refs}
    assert sizes["images/04-2.jpg"] == (1600, 1067)  # the 3000×2000 photo, capped
    assert sizes["images/07-sum-a1.jpg"] == (400, 400)  # noisy PNG re-encoded as JPEG
    assert Image.open(archive.open("images/03-cmd.png")).mode == "RGB"  # transparency flattened
    assert "*(image missing)*\n\n*a lost picture*" in text and "gone" not in text and "broken" not in text
    assert article_markdown_zip(draft).data == result.data  # deterministic


def test_markdown_structure_and_escaping(draft):
    markdown_it = pytest.importorskip("markdown_it")
    text = zipfile.ZipFile(io.BytesIO(article_markdown_zip(draft).data)).read("article.md").decode("utf-8")
    tokens = markdown_it.MarkdownIt("commonmark").parse(text)
    assert not any(t.type in ("html_block", "html_inline") for t in tokens)
    assert tokens[0].tag == "h1"
    heading = "".join(c.content for c in tokens[1].children)
    assert heading == TITLE
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.content for f in fences] == ["print('<b>')\n"]  # closed within its paragraph
    inline = " ".join(t.content for t in tokens if t.type == "inline")
    assert "中文段落" in inline and "a red boat" in inline
    assert "*internlm-xcomposer2-vl-1\\_8b · 2025-03-04*" in text


@pytest.mark.parametrize("source, expected", [
    ("a <b>x</b>", "a &lt;b>x&lt;/b>"),
    ("`<i>` and ``<j>`` kept", "`<i>` and ``<j>`` kept"),
    ("\\`<k>`", "\\`&lt;k>`"),
    ("~~~\n<x>\n~~~\n<y>", "~~~\n<x>\n~~~\n&lt;y>"),
    ("```\nopen", "```\nopen\n```"),
    ("a\r\nb\x00c", "a\nbc"),
    ("see ![remote](http://t/p.png)", "see \\![remote](http://t/p.png)"),
])
def test_markdown_paragraph(source, expected):
    assert markdown_paragraph(source) == expected


# -- HTML -------------------------------------------------------------------------------------


class Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def test_html_is_self_contained_and_escaped(draft):
    result = article_html(draft)
    assert result.filename == "HYPERLINK-http-x.html"
    check_warnings(result.warnings)
    doc = result.data.decode("utf-8")
    page = Collect()
    page.feed(doc)
    page.close()
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert ("meta", {"charset": "utf-8"}) in page.tags
    assert page.title == TITLE
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) == len(present(draft)) == tags.count("figure") - 2
    for attrs in images:
        assert attrs["src"].startswith("data:image/")
        data = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    for _, attrs in page.tags:
        assert not any(k.startswith("on") for k in attrs)
        for key in ("src", "href", "action", "srcset", "poster"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key) or "", re.I)
    assert "@import" not in doc and "url(" not in doc
    text = "".join(page.text)
    assert XSS in text  # shown as text, never parsed as markup
    assert "[image: remote]" in text and "link (https://evil.example/x)" in text
    assert "Image missing" in text and "a lost picture" in text
    assert '&lt;b&gt;photo&lt;/b&gt; &amp; &quot;quotes&quot;' in doc  # the caption, escaped
    assert '<b>photo</b> & "quotes"' in text
    assert "Written by internlm-xcomposer2-vl-1_8b" in text and "2025-03-04" in text
    assert doc.count("<pre") == 1 and "'&lt;b&gt;'" in doc  # the unclosed fence is still code


def test_sanitise_balances_and_strips():
    assert sanitise("<p><em>x</p></div>") == "<p><em>x</em></p>"
    assert sanitise('<p onclick="x" style="color:red">a<a href="javascript:alert(1)">b</a></p>') == "<p>ab</p>"
    assert sanitise('<td style="text-align:center;">1</td>') == '<td style="text-align:center">1</td>'
    assert sanitise("<p>&lt;script&gt;</p><!-- c --><style>x</style>") == "<p>&lt;script&gt;</p>x"


def test_html_falls_back_to_plain_text():
    draft = ArticleDraft(blocks=[ArticleBlock("> " * 2000 + "deep <b>"), ArticleBlock("[a](b " * 3000),
                                 ArticleBlock("**fine**")])
    result = article_html(draft)
    assert result.warnings == ("Paragraph 1 could not be read as Markdown; the HTML shows it as plain text.",
                               "Paragraph 2 is very long (18,000 characters); the HTML shows it as plain text.")
    doc = result.data.decode("utf-8")
    assert "deep &lt;b&gt;" in doc and "<strong>fine</strong>" in doc


# -- XLSX -------------------------------------------------------------------------------------


def _workbook(data: bytes):
    openpyxl = pytest.importorskip("openpyxl")
    return openpyxl.load_workbook(io.BytesIO(data))


def test_xlsx_rows_images_and_plain_text(draft):
    result = article_xlsx(draft)
    assert result.filename == "HYPERLINK-http-x.xlsx"
    check_warnings(result.warnings)
    book = _workbook(result.data)
    assert book.sheetnames == ["Article", "About"]
    sheet = book["Article"]
    assert [c.value for c in sheet[1]] == ["#", "Paragraph", "Image", "Caption"]
    assert sheet.max_row == len(draft.blocks) + 1 and sheet.freeze_panes == "A2"
    for i, block in enumerate(draft.blocks):
        row = i + 2
        assert sheet.cell(row, 1).value == i + 1
        para = sheet.cell(row, 2)
        assert para.data_type == "s" and para.value == block.text
        assert para.alignment.wrap_text and para.alignment.vertical == "top"
        if block.image is not None and block.image.caption:
            caption = sheet.cell(row, 4)
            assert caption.data_type == "s" and caption.value == block.image.caption
    assert sheet.cell(6, 3).value == "(image missing)"
    anchors = sorted((img.anchor._from.row, img.anchor._from.col) for img in sheet._images)
    assert anchors == [(i + 1, 2) for i in present(draft)]  # 0-based rows: header is row 0
    assert sheet.column_dimensions["B"].width >= 80
    assert sheet.row_dimensions[2].height >= 130  # tall enough for the picture box
    assert not sheet._hyperlinks and not book["About"]._hyperlinks
    with zipfile.ZipFile(io.BytesIO(result.data)) as raw:
        sheets = [raw.read(n).decode("utf-8") for n in raw.namelist() if n.startswith("xl/worksheets/sheet")]
        assert not any("<f>" in s or "<f " in s for s in sheets)
        assert not any(n.endswith(".rels") and "hyperlink" in raw.read(n).decode("utf-8") for n in raw.namelist())


def test_xlsx_about_sheet(draft):
    about = _workbook(article_xlsx(draft).data)["About"]
    cells = {row[0].value: row[1] for row in about.iter_rows(min_row=1, max_col=2)}
    for label, value in [("Title", TITLE), ("Instruction", draft.instruction), ("Model", draft.model),
                         ("Engine", "hf"), ("Seed", None), ("Image count", "chosen by the model"),
                         ("Created", "2025-03-04T05:06:07+00:00"), ("Updated", "2025-03-04T06:06:07+00:00")]:
        if value is not None:
            assert cells[label].value == value and cells[label].data_type == "s", label
    assert cells["Beams"].value == 2 and cells["Seed"].value == 8909
    assert cells["Repetition penalty"].value == pytest.approx(1.05)
    assert cells["Do sample"].value is False
    assert cells["Images"].value == 8 and cells["Images missing"].value == 2


def test_xlsx_cell_limit_and_control_characters(tmp_path):
    draft = ArticleDraft(title="t", blocks=[ArticleBlock("x" * 40_000), ArticleBlock("a\x00b\x07c \ud800")])
    result = article_xlsx(draft)
    sheet = _workbook(result.data)["Article"]
    assert len(sheet["B2"].value) == 32_767 and "Paragraph 1 is longer" in result.warnings[0]
    assert sheet["B3"].value == "abc \ufffd"


# -- all three, and names ----------------------------------------------------------------------


def test_empty_draft_and_forty_blocks(tmp_path):
    for export in (article_markdown_zip, article_html, article_xlsx):
        result = export(ArticleDraft())
        assert result.data and result.warnings == () and result.filename.startswith("article.")
    pic = tmp_path / "p.jpg"
    Image.linear_gradient("L").convert("RGB").save(pic)
    blocks = [ArticleBlock(f"Paragraph {i} " * 30, ArticleImage(str(pic), f"pic {i}") if i % 2 else None)
              for i in range(40)]
    draft = ArticleDraft(title="Forty", blocks=blocks)
    assert len(_workbook(article_xlsx(draft).data)["Article"]._images) == 20
    assert article_html(draft).data.count(b"<img ") == 20
    assert len(zipfile.ZipFile(io.BytesIO(article_markdown_zip(draft).data)).namelist()) == 21


@pytest.mark.parametrize("title, stem", [
    ("", "article"),
    ("   ", "article"),
    ("长" * 500, "长" * 80),
    ("../../etc/passwd", "etc-passwd"),
    ("a/b\\c", "a-b-c"),
    ("x\x00y", "x-y"),
    ("🐱 cat 🐶", "cat"),
    ("🐱🐶", "article"),
    ("CON", "article-CON"),
    ("lpt1", "article-lpt1"),
    (TITLE, "HYPERLINK-http-x"),
    ("a\ud800b", "a-b"),
    ("कि" * 50, "कि" * 40),
])
def test_safe_stem(title, stem):
    assert safe_stem(title) == stem


def test_safe_stem_never_splits_a_letter_from_its_mark():
    assert safe_stem("कि" * 50, max_len=5) == "कि" * 2
    assert len(safe_stem("\U00020000" * 500).encode("utf-8")) <= 240


@pytest.mark.parametrize("title", ["", "   ", "长" * 500, "../../etc/passwd", "a/b\\c", "x\x00y", "🐱 cat 🐶",
                                   "CON", TITLE, "/abs/path", ".."])
def test_export_path_stays_inside(tmp_path, title):
    path = export_path(tmp_path, title, "xlsx")
    assert path.parent == tmp_path.resolve() and path.suffix == ".xlsx"
    assert path == export_path(tmp_path, title, ".xlsx")  # deterministic
    path.write_bytes(b"x")
    second = export_path(tmp_path, title, "xlsx")
    assert second != path and second.name == f"{path.stem}-2.xlsx" and second.parent == path.parent


def test_export_path_rejects_bad_extension(tmp_path):
    with pytest.raises(ValueError):
        export_path(tmp_path, "t", "../x")


@pytest.mark.parametrize("text, slug", [("A Red Boat!", "a-red-boat"), ("长江", "image"), ("Café", "cafe"),
                                        ("../x", "x"), ("", "image")])
def test_ascii_slug(text, slug):
    assert ascii_slug(text) == slug
