"""Where in the estate: building, unit, room, and named landmarks, from how residents write them.

Forms: 3号楼, 3栋, 三栋, 3幢, 3#楼, 3座, 3-2-501, 3-2单元, 3栋2单元501, 2单元3楼 (a floor, not a room),
B区5栋 (→ "B5"), block 3 / building 3, 我住1704; and the landmarks a community lists (北门, 地下车库).
The text is expected simplified and half-width (see `features.plain`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

_DIGITS = "零一二三四五六七八九"
_CN_NUMBER = "[零一二两三四五六七八九十百]+"
_NUM = rf"(?:\d+|{_CN_NUMBER})"
_EMERGENCY = frozenset({"110", "119", "120", "122", "999", "911"})  # phone numbers, never rooms


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


_DASH = "[-—–－~]"
_AREAS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ东南西北中"
_AREA = r"(?:([a-z]|[东南西北中])区)?"
# 3-2-501 and 3-2-1501: building, unit, room.
_TRIPLE = re.compile(rf"(?<![\d:./-])(\d{{1,3}})\s*{_DASH}\s*(\d{{1,2}})\s*{_DASH}\s*(\d{{3,4}})(?![\d:./])")
# 3-2单元, "25-3 有个…", "13-1的": building and unit; never a range like 1-3号楼, 8-12点 or 3-5天.
_PAIR = re.compile(
    rf"(?<![\d:./-])(\d{{1,3}})\s*{_DASH}\s*(\d{{1,2}})(?:\s*[单單]元|(?=\s|的|楼[上下道]|门|$)"
    r"(?!\s*(?:号|天|点|月|年|个|次|岁|米|元|块|层|楼(?![上下道])|分|:|周|小时|h\b)))"
)
_BUILDING = re.compile(
    _AREA + rf"(?<![\d\-—–~至到])({_NUM}|(?<![a-z])[a-z]\d{{0,3}})"
    rf"\s*(?:[号號][楼樓]|[栋棟][楼樓]?|幢|座(?![椅位机])|号院|#[楼樓]?|[号號](?=\s*{_NUM}\s*[单單]元))"
)
_BUILDING_EN = re.compile(  # case kept: "Block B" is a building, "cars block a lane" is not
    r"\b(?i:block|building|bldg\.?|tower|blk\.?)\s*(?i:no\.?\s*)?#?\s*((?i:[a-z]?\d{1,3}[a-z]?)|[A-Z])\b"
    r"(?!\s*(?i:am|pm|min))"
)
# Every form below has a digit, a Chinese numeral or one of these words: without them there is no place.
_MAYBE_PLACE = re.compile(r"[\d零一二两三四五六七八九十百栋幢座#]|block|building|bldg|tower|blk|unit|room|flat|apt|rm")
_OF_A_BUILDING = set("道上下前后里门顶梯口")  # 一栋楼道: building 1's stairwell; 一栋楼都: one whole building
_UNIT = re.compile(rf"({_NUM})\s*[单單]元")
_UNIT_EN = re.compile(r"\bunit\s*#?\s*(\d{1,2})\b")
_NOT_A_ROOM = r"(?!\d|\s*(?:楼|层|米|元|块|分|天|年|月|号楼|个|人|次|斤|辆|平|户|多|几|万|千|ml|kg|cm|mm|km|%))"
_ROOM = re.compile(r"(?:[单單]元|[栋棟幢座#]|[号號][楼樓])\s*(\d{3,4})(?:室|号|房)?" + _NOT_A_ROOM)
_ROOM_PLAIN = re.compile(r"(?<![\d-])(\d{3,4})\s*(?:室|房间|房(?!子|东|租|价))")
_ROOM_HOME = re.compile(r"(?:我住|住在|我家是?|我们家是?|家住)\s*(\d{3,4})" + _NOT_A_ROOM)
_ROOM_EN = re.compile(r"\b(?:room|flat|apt\.?|apartment|rm\.?)\s*#?\s*(\d{3,4})\b")


def parse_location(
    text: str, *, landmarks: Sequence[str] = (), buildings: Collection[str] | None = None
) -> Location:
    """Find the place in `text`. A building not in `buildings` (when given) is reported as unknown."""
    lowered = text.lower()
    landmark = next((name for name in landmarks if name and name.lower() in lowered), None)
    if not _MAYBE_PLACE.search(lowered):
        return Location(landmark=landmark)
    building = unit = room = None
    mentions: list[tuple[int, str]] = []  # (where, building) in the order they are written
    if match := _TRIPLE.search(lowered):
        mentions.append((match.start(), match[1]))
        unit, room = match[2], match[3]
    for match in _BUILDING.finditer(lowered):
        if code := _building_code(match[1], match[2], match[0], lowered[match.end():match.end() + 1]):
            mentions.append((match.start(), code))
    if match := _PAIR.search(lowered):
        mentions.append((match.start(), match[1]))
        unit = unit or match[2]
    mentions += [(match.start(), match[1].upper()) for match in _BUILDING_EN.finditer(text)]
    mentions.sort()
    if unit is None and (match := _UNIT.search(lowered) or _UNIT_EN.search(lowered)):
        unit = str(chinese_number(match[1]) or match[1])
    if room is None:
        for pattern in (_ROOM, _ROOM_PLAIN, _ROOM_HOME, _ROOM_EN):
            found = next((m[1] for m in pattern.finditer(lowered) if m[1] not in _EMERGENCY), None)
            if found:
                room = found
                break
    unknown = None
    if mentions:
        if buildings is None:
            building = mentions[0][1]
        else:
            known = {_normal(name) for name in buildings}
            building = next((name for _, code in mentions for name in (code, code.lstrip(_AREAS)) if name in known),
                            None)
            if building is None:
                unknown, unit, room = mentions[0][1], None, None
    return Location(building, unit, room, landmark, unknown)


def _building_code(area: str | None, number: str, written: str = "", after: str = "") -> str | None:
    if number in ("一", "两") and not area and written.endswith(("栋楼", "座", "幢")) and after not in _OF_A_BUILDING:
        return None  # 一栋楼, 两座: how many buildings, not which
    value = chinese_number(number)
    if value == 0:
        return None
    code = str(value) if value is not None else number.upper()
    if area:
        code = f"{area.upper() if area.isascii() else area}{code}"
    return code


def _normal(name: str) -> str:
    """A community's building as listed ("3", "3栋", "B区5栋") in the parser's own form."""
    name = str(name).strip()
    if match := _BUILDING.fullmatch(name.lower()):
        return _building_code(match[1], match[2], match[0]) or name
    number = chinese_number(name)
    return str(number) if number is not None else name.upper()
