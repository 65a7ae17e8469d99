"""Labelled messages from files: the project's JSON lines, or a community's 台账 exported as CSV.

Headers may be English (text, is_request, category, urgency, matter, building, unit, room) or the
Chinese column names of a 台账 (内容, 是否工单, 类别, 紧急程度, 事项分类, 楼栋, 单元, 房号); labels may be
codes (facilities, red, minor) or their Chinese names (公共设施, 红, 小事).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from handlers.triage.location import chinese_number
from handlers.triage.normalize import fold, simplified

CATEGORY_NAMES = {
    "utilities": ("水电气暖", "水电气", "水电", "供水供电"),
    "facilities": ("公共设施", "设施", "设施设备"),
    "sanitation": ("环境卫生", "卫生", "环境"),
    "noise": ("噪音扰民", "噪音", "噪声"),
    "parking": ("停车交通", "停车", "交通"),
    "safety": ("治安消防", "治安", "消防", "安全"),
    "dispute": ("邻里纠纷", "纠纷", "矛盾纠纷"),
    "property": ("物业服务", "物业"),
    "assistance": ("帮扶关爱", "帮扶", "关爱", "微心愿"),
    "services": ("政务服务", "政务", "办事"),
    "construction": ("违建占道", "违建", "占道"),
    "other": ("其他", "其它"),
}
URGENCY_NAMES = {
    "red": ("红", "红色", "紧急", "特急"),
    "yellow": ("黄", "黄色", "较急"),
    "blue": ("蓝", "蓝色", "一般", "普通"),
}
MATTER_NAMES = {
    "major": ("大事",),
    "minor": ("小事",),
    "private": ("私事",),
}
YES = frozenset({"true", "1", "yes", "y", "是", "是工单", "工单", "对", "t"})
NO = frozenset({"false", "0", "no", "n", "否", "不是", "非工单", "不是工单", "f"})
COLUMNS = {
    "text": ("text", "内容", "消息", "消息内容", "诉求内容", "诉求", "问题描述", "content", "message"),
    "is_request": ("is_request", "是否工单", "是否诉求", "工单", "request"),
    "category": ("category", "类别", "分类", "问题类别", "问题分类"),
    "urgency": ("urgency", "紧急程度", "紧急", "等级", "颜色"),
    "matter": ("matter", "事项分类", "三事分流", "事项", "事项类别"),
    "building": ("building", "楼栋", "楼号", "栋"),
    "unit": ("unit", "单元"),
    "room": ("room", "房号", "门牌", "门牌号", "房间"),
}
_PLACE_SUFFIX = re.compile(r"(?:号楼|栋楼|栋|幢|座|号|单元|室|#)$")


class DataError(ValueError):
    """A labelled file that cannot be read; the message names the file and the line."""


@dataclass(slots=True)
class Example:
    text: str
    is_request: bool
    category: str | None = None
    urgency: str | None = None
    matter: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _names(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    lookup = {code: code for code in table}
    for code, names in table.items():
        lookup.update({name: code for name in names})
    return lookup


_CATEGORY = _names(CATEGORY_NAMES)
_URGENCY = _names(URGENCY_NAMES)
_MATTER = _names(MATTER_NAMES)
_HEADER = {name: key for key, names in COLUMNS.items() for name in names}


def _key(value: object) -> str:
    return simplified(fold(str(value))).strip().lower()


def category_code(value: object) -> str | None:
    """'公共设施', '公共設施' or 'facilities' → 'facilities'; a community's own code is kept as written."""
    if value is None or _key(value) in ("", "none", "null", "—", "-"):
        return None
    key = _key(value)
    return _CATEGORY.get(key) or _CATEGORY.get(key.removesuffix("类")) or key


def urgency_code(value: object) -> str | None:
    if value is None or _key(value) in ("", "none", "null", "—", "-"):
        return None
    key = _key(value)
    code = _URGENCY.get(key) or _URGENCY.get(key[:1])
    if code is None:
        raise ValueError(f"urgency {value!r} is not red/yellow/blue (红/黄/蓝)")
    return code


def matter_code(value: object) -> str | None:
    if value is None or _key(value) in ("", "none", "null", "—", "-"):
        return None
    key = _key(value)
    code = _MATTER.get(key)
    if code is None:
        raise ValueError(f"matter {value!r} is not major/minor/private (大事/小事/私事)")
    return code


def flag(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    key = _key(value)
    if key in YES:
        return True
    if key in NO:
        return False
    if key == "":
        return None
    raise ValueError(f"is_request {value!r} is not yes/no (是/否)")


def place(value: object) -> str | None:
    """'3', '3栋', '三号楼', 'B5' → '3', '3', '3', 'B5'."""
    if value is None:
        return None
    key = _PLACE_SUFFIX.sub("", _key(value).replace(" ", ""))
    if key in ("", "none", "null", "—", "-"):
        return None
    number = chinese_number(key)
    return str(number) if number is not None else key.upper()


def example(row: dict) -> Example:
    """One labelled example from a row with English or Chinese keys; raises ValueError on bad labels."""
    fields = {}
    for name, value in row.items():
        key = _HEADER.get(_key(name)) if name is not None else None
        if key and key not in fields:
            fields[key] = value
    text = fields.get("text")
    if text is None or not str(text).strip():
        raise ValueError("no text")
    category = category_code(fields.get("category"))
    is_request = flag(fields.get("is_request"))
    if is_request is None:
        is_request = category is not None  # a 台账 without the column: a row with a category is an order
    if not is_request:
        return Example(str(text), False, building=place(fields.get("building")), unit=place(fields.get("unit")),
                       room=place(fields.get("room")))
    return Example(
        str(text), True, category, urgency_code(fields.get("urgency")), matter_code(fields.get("matter")),
        place(fields.get("building")), place(fields.get("unit")), place(fields.get("room")),
    )


def read(path: Path) -> list[Example]:
    """Every example of a .jsonl/.json (optionally .gz) or .csv file; a bad row stops with its line number."""
    return list(_rows(path))


def read_all(paths: Iterable[Path]) -> list[Example]:
    return [item for path in paths for item in read(path)]


def _rows(path: Path) -> Iterator[Example]:
    name = path.name.lower().removesuffix(".gz")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.lower().endswith(".gz") else path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: {error.strerror or error}") from None
    text = _decode(raw, path)
    if name.endswith(".csv") or name.endswith(".tsv"):
        rows: Iterable[tuple[int, object]] = _csv_rows(text, "\t" if name.endswith(".tsv") else ",", path)
    else:
        rows = _json_rows(text, path)
    for number, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: not an object with text and labels")
        try:
            yield example(row)
        except ValueError as error:
            raise DataError(f"{path}:{number}: {error}") from None


def _decode(raw: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "gb18030"):  # spreadsheets on Chinese Windows save CSV as GBK
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: neither UTF-8 nor GB18030 text")


def _csv_rows(text: str, delimiter: str, path: Path) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames or not any(_HEADER.get(_key(name)) == "text" for name in reader.fieldnames):
        raise DataError(f"{path}: the CSV needs a header row with a text column (text or 内容)")
    for row in reader:
        if any((value or "").strip() for value in row.values() if isinstance(value, str)):
            yield reader.line_num, row


def _json_rows(text: str, path: Path) -> Iterator[tuple[int, object]]:
    stripped = text.lstrip()
    if stripped.startswith("["):  # one JSON array
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: {error}") from None
        yield from enumerate(rows, 1)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: {error.msg}") from None


def write_jsonl(examples: Iterable[Example | dict], path: Path) -> None:
    lines = [json.dumps(item.as_dict() if isinstance(item, Example) else item, ensure_ascii=False)
             for item in examples]
    payload = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
