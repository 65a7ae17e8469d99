"""Where in the estate: building, unit, room, and named landmarks, from how residents write them."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

_DIGITS = "零一二三四五六七八九"
_CN_NUMBER = "[零一二两三四五六七八九十百]+"
_NUM = rf"(?:\d+|{_CN_NUMBER})"


def chinese_number(text: str) -> int | None:
    """'3' → 3, '三' → 3, '十二' → 12, '二十三' → 23, '一百零五' → 105."""
    if text.isdigit():
        return int(text)
    text = text.replace("两", "二")
    total, current = 0, 0
    for char in text:
        if char in _DIGITS:
            current = _DIGITS.index(char)
        elif char == "十":
            total += (current or 1) * 10
            current = 0
        elif char == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


@dataclass(frozen=True, slots=True)
class Location:
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    landmark: str | None = None
    unknown_building: str | None = None  # named, but not a building of this community

    def as_dict(self) -> dict[str, str | None]:
        return {"building": self.building, "unit": self.unit, "room": self.room}

    def describe(self) -> str:
        """A short Chinese place label: 3栋2单元501, or the landmark."""
        parts = []
        if self.building:
            parts.append(f"{self.building}栋")
        if self.unit:
            parts.append(f"{self.unit}单元")
        if self.room:
            parts.append(self.room)
        if not parts and self.landmark:
            parts.append(self.landmark)
        return "".join(parts)

    def __bool__(self) -> bool:
        return any(asdict(self).values())


_AREA = r"(?:([A-Za-z]|[东南西北中一二三四五六七八九])区)?"
# 3-2-501, 3-2-1501, 3栋2单元501 and friends: the fullest forms first.
_TRIPLE = re.compile(r"(?<![\d-])(\d{1,3})\s*[-—－]\s*(\d{1,2})\s*[-—－]\s*(\d{3,4})(?![\d-])")
_BUILDING = re.compile(
    _AREA + rf"({_NUM}|[A-Za-z]\d*)\s*(?:号楼|號樓|栋楼|栋|棟|幢|座|号院|#楼|#|＃楼|号(?=\d{{0,2}}单元))"
)
_BUILDING_EN = re.compile(r"\b(?:block|building|bldg\.?|tower)\s*#?\s*([A-Za-z]?\d+[A-Za-z]?)\b", re.I)
_UNIT = re.compile(rf"({_NUM})\s*(?:单元|單元)")
_UNIT_EN = re.compile(r"\bunit\s*#?\s*(\d+)\b", re.I)
_NOT_A_ROOM = r"(?!\d|\s*(?:楼|層|层|米|元|块|分|天|年|月|号楼))"  # 502楼, 300米, 500元 are not rooms
_ROOM = re.compile(r"(?:单元|單元|[栋棟幢座#]|号楼|-)\s*(\d{3,4})(?:室|号|房)?" + _NOT_A_ROOM)
_ROOM_PLAIN = re.compile(r"(?<!\d)(\d{3,4})\s*(?:室|房间|房)")
_ROOM_EN = re.compile(r"\b(?:room|flat|apt\.?|apartment)\s*#?\s*(\d{3,4})\b", re.I)


def parse_location(
    text: str, *, landmarks: Sequence[str] = (), buildings: Collection[str] | None = None
) -> Location:
    """Find the place in `text`. A building not in `buildings` (when given) is reported as unknown."""
    building = unit = room = None
    if match := _TRIPLE.search(text):
        building, unit, room = match[1], match[2], match[3]
    else:
        if match := _BUILDING.search(text):
            building = _building_code(match[1], match[2])
        elif match := _BUILDING_EN.search(text):
            building = match[1].upper()
        if match := _UNIT.search(text) or _UNIT_EN.search(text):
            unit = str(chinese_number(match[1]) or match[1])
        if match := _ROOM.search(text) or _ROOM_PLAIN.search(text) or _ROOM_EN.search(text):
            room = match[1]
    landmark = next((name for name in landmarks if name and name in text), None)
    unknown = None
    if building is not None and buildings is not None and building not in buildings:
        unknown, building, unit, room = building, None, None, None
    return Location(building, unit, room, landmark, unknown)


def _building_code(area: str | None, number: str) -> str | None:
    value = chinese_number(number)
    code = str(value) if value is not None else number.upper()
    if area:
        area = area.upper() if area.isascii() else area
        code = f"{area}{code}"
    return code
