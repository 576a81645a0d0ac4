"""Article as an .xlsx workbook: one row per paragraph with its picture, and an "About" sheet.

Every piece of user or model text goes through `write_string` on a workbook that converts nothing,
so `=HYPERLINK(...)`, `+1`, `@SUM(A1)` or a URL stay the text they are (DESIGN §5).
"""

from __future__ import annotations

import math
import unicodedata
from io import BytesIO
from typing import Any

import xlsxwriter

from studio.core.article import ArticleDraft
from studio.exports.article_images import (EncodedImage, ExportResult, article_export, article_title, clean_text,
                                           iso_date, scale_to_box)

WORKBOOK_OPTIONS = {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                    "strings_to_numbers": False}
HEADERS = ("#", "Paragraph", "Image", "Caption")
IMAGE_COL = 2
BOX_W, BOX_H, PAD = 240, 180, 6  # the picture's box inside its cell, in pixels
# Twice the box: sharp when the sheet is zoomed, small enough to keep the workbook light.
XLSX_MAX_SIDE = 2 * BOX_W
PARAGRAPH_WIDTH = 80  # characters
CELL_LIMIT = 32_767  # Excel's maximum characters in a cell
MAX_ROW_PX = 545  # Excel's maximum row height (409 pt)
LINE_PX = 20  # one wrapped line of 11-pt text
_UNSET = {"seed": "random", "image_count": "chosen by the model"}


def _fit_cell(text: str, what: str, warnings: list[str]) -> str:
    """`text` cut to Excel's cell limit, with a warning when it had to be cut."""
    if len(text) <= CELL_LIMIT:
        return text
    warnings.append(f"{what} is longer than Excel's {CELL_LIMIT:,}-character cell limit; "
                    f"the spreadsheet holds its first {CELL_LIMIT - 1:,} characters.")
    return text[: CELL_LIMIT - 1] + "…"


def _text_height(text: str, width: int) -> int:
    """Rough pixel height of `text` wrapped at `width` characters (wide CJK characters count twice)."""
    lines = 0
    for line in text.split("\n"):
        units = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)
        lines += max(1, math.ceil(units / width))
    return lines * LINE_PX + 2 * PAD


def _formats(book: Any) -> dict[str, Any]:
    base = {"valign": "top", "text_wrap": True}
    return {
        "header": book.add_format({"bold": True, "bottom": 1, "valign": "vcenter", "bg_color": "#EFEFEA"}),
        "index": book.add_format({"valign": "top", "align": "center"}),
        "text": book.add_format(base),
        "caption": book.add_format({**base, "italic": True}),
        "missing": book.add_format({**base, "italic": True, "font_color": "#888888"}),
        "label": book.add_format({"bold": True, "valign": "top"}),
        "value": book.add_format({**base, "align": "left"}),
    }


def _picture(sheet: Any, row: int, image: EncodedImage, caption: str) -> int:
    """Anchor `image` in the image column at `row`, scaled into the box; returns the row height it needs."""
    scale = scale_to_box(image.width, image.height, BOX_W, BOX_H)
    shown_w = round(image.width * scale)
    sheet.insert_image(row, IMAGE_COL, f"image-{row}.{image.ext}", {
        "image_data": BytesIO(image.data), "x_scale": scale, "y_scale": scale,
        "x_offset": PAD + (BOX_W - shown_w) // 2, "y_offset": PAD,
        "object_position": 1,  # move and size with the cell, so sorting or resizing rows keeps it in place
        "description": caption[:255] or "image",
    })
    return BOX_H + 2 * PAD  # the whole box, so rows with pictures line up whatever their shape


def _article_sheet(book: Any, fmt: dict, draft: ArticleDraft, images: list[EncodedImage | None],
                   warnings: list[str]) -> None:
    sheet = book.add_worksheet("Article")
    sheet.set_column(0, 0, 5)
    sheet.set_column(1, 1, PARAGRAPH_WIDTH)
    sheet.set_column_pixels(IMAGE_COL, IMAGE_COL, BOX_W + 2 * PAD)
    sheet.set_column(3, 3, 36)
    for col, header in enumerate(HEADERS):
        sheet.write_string(0, col, header, fmt["header"])
    sheet.set_row_pixels(0, 28)
    sheet.freeze_panes(1, 0)
    for index, (block, image) in enumerate(zip(draft.blocks, images)):
        row = index + 1
        text = _fit_cell(clean_text(block.text), f"Paragraph {index + 1}", warnings)
        sheet.write_number(row, 0, index + 1, fmt["index"])
        sheet.write_string(row, 1, text, fmt["text"])
        height = _text_height(text, PARAGRAPH_WIDTH)
        if block.image is not None:
            caption = _fit_cell(clean_text(block.image.caption), f"The caption of image {index + 1}", warnings)
            sheet.write_string(row, 3, caption, fmt["caption"])
            if image is None:
                sheet.write_string(row, IMAGE_COL, "(image missing)", fmt["missing"])
            else:
                height = max(height, _picture(sheet, row, image, caption))
        sheet.set_row_pixels(row, min(height, MAX_ROW_PX))
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(0)


def _about_sheet(book: Any, fmt: dict, draft: ArticleDraft, images: list[EncodedImage | None],
                 warnings: list[str]) -> None:
    sheet = book.add_worksheet("About")
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 1, PARAGRAPH_WIDTH)
    texts = [("Title", article_title(draft)), ("Instruction", draft.instruction), ("Material", draft.material),
             ("Model", draft.model), ("Engine", draft.engine)]
    row = 0
    for label, value in texts:
        sheet.write_string(row, 0, label, fmt["label"])
        sheet.write_string(row, 1, _fit_cell(clean_text(value), label, warnings), fmt["value"])
        row += 1
    for name, value in draft.params.model_dump().items():
        sheet.write_string(row, 0, name.replace("_", " ").capitalize(), fmt["label"])
        if isinstance(value, bool):
            sheet.write_boolean(row, 1, value, fmt["value"])
        elif isinstance(value, (int, float)) and math.isfinite(value):
            sheet.write_number(row, 1, value, fmt["value"])
        else:
            sheet.write_string(row, 1, _UNSET.get(name, "") if value is None else str(value), fmt["value"])
        row += 1
    placed = sum(block.image is not None for block in draft.blocks)
    missing = placed - sum(image is not None for image in images)
    rows: list[tuple[str, Any]] = [("Created", iso_date(draft.created)), ("Updated", iso_date(draft.updated)),
                                   ("Images", placed), ("Images missing", missing)]
    for label, value in rows:
        sheet.write_string(row, 0, label, fmt["label"])
        if isinstance(value, int):
            sheet.write_number(row, 1, value, fmt["value"])
        else:
            sheet.write_string(row, 1, value, fmt["value"])
        row += 1


def article_xlsx(draft: ArticleDraft) -> ExportResult:
    """The article as an .xlsx workbook: sheet "Article" (row per paragraph, pictures embedded) and "About"."""
    return article_export(draft, "xlsx", _workbook_bytes, XLSX_MAX_SIDE)


def _workbook_bytes(draft: ArticleDraft, images: list[EncodedImage | None]) -> tuple[bytes, list[str]]:
    warnings: list[str] = []
    buffer = BytesIO()
    book = xlsxwriter.Workbook(buffer, WORKBOOK_OPTIONS)
    book.set_properties({"title": article_title(draft)[:255], "comments": "Exported from Puyu Studio"})
    fmt = _formats(book)
    _article_sheet(book, fmt, draft, images, warnings)
    _about_sheet(book, fmt, draft, images, warnings)
    book.close()
    return buffer.getvalue(), warnings
