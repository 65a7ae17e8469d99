"""`mask_private`: phone, ID and bank-card numbers never leave the chat they were written in, whatever their
form (separators, +86, full-width digits, Chinese around them); the numbers of daily life pass untouched.

The private numbers are generated with hypothesis, with the variants residents type; the innocent texts are
a list of real-looking ones plus generated house numbers, dates, times, amounts and order numbers.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from handlers.triage.normalize import mask_private
from tests.neighbourhood import Neighbourhood

EXAMPLES = settings(max_examples=400, deadline=None, derandomize=True)  # the same cases on every run: CI stays honest

# --- what residents type around and between the digits -------------------------------------------------
GAPS = ["", " ", "-", ".", "  ", " - ", "\u3000", "－", "\t", "\u200b"]  # \u3000 ideographic space, － full-width
COUNTRY = ["", "+86", "86", "0086", "+86 ", "+86-", "0086 ", "(+86)", "（+86）", "＋86 "]
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
AROUND = st.text(alphabet=st.one_of(CJK, st.sampled_from("，。！？：:、（） abcXYZ")), max_size=12)


def digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=count, max_size=count)


def full_width(text: str) -> str:
    return "".join(chr(ord(c) - 0x30 + 0xFF10) if c.isdigit() else c for c in text)


def plain(text: str) -> str:
    """What a reader sees, in ASCII: full-width folded, separators dropped."""
    return re.sub(r"[\s\-.\u200b]", "", unicodedata.normalize("NFKC", text))


@st.composite
def written(draw: st.DrawFn, groups: list[str], *, one_gap: bool = False) -> str:
    """`groups` joined by gaps residents type (one kind of gap for all, with `one_gap`), maybe full-width."""
    gaps = [draw(st.sampled_from(GAPS))] * len(groups) if one_gap else [draw(st.sampled_from(GAPS)) for _ in groups]
    text = groups[0] + "".join(gap + group for gap, group in zip(gaps, groups[1:], strict=False))
    return full_width(text) if draw(st.booleans()) else text


@st.composite
def mobiles(draw: st.DrawFn) -> tuple[str, str, str]:
    """(as written, the number, as it may be shown)."""
    number = "1" + draw(st.sampled_from("3456789")) + draw(digits(9))
    text = draw(st.sampled_from(COUNTRY)) + draw(written([number[:3], number[3:7], number[7:]]))
    return text, number, number[:3] + "****" + number[7:]


@st.composite
def landlines(draw: st.DrawFn) -> tuple[str, str, str]:
    area = draw(st.one_of(st.sampled_from(["010", "020", "021", "022", "023", "024", "025", "027", "028", "029"]),
                          st.from_regex(r"0[3-9][0-9]{2}", fullmatch=True)))
    local = draw(st.one_of(digits(7), digits(8)))
    shape = draw(st.sampled_from(["{a}-{l}", "({a}){l}", "（{a}）{l}", "{a} {l}", "{a}{l}", "{a} {h} {t}",
                                  "{a}-{h}-{t}", "{a}.{h}.{t}", "+86 {n} {h} {t}", "+86-{n}-{l}", "0086 {n}{l}"]))
    text = shape.format(a=area, n=area[1:], l=local, h=local[:-4], t=local[-4:])
    text = full_width(text) if draw(st.booleans()) else text
    return text, area + local, "*" * (len(local) - 4) + local[-4:]


@st.composite
def ids18(draw: st.DrawFn) -> tuple[str, str, str]:
    area = draw(st.from_regex(r"[1-8][0-9]{5}", fullmatch=True))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 12, 31))).strftime("%Y%m%d")
    tail = draw(digits(3)) + draw(st.sampled_from("0123456789Xx"))
    layout = draw(st.sampled_from([[area + born + tail], [area, born, tail], [area, born[:4], born[4:], tail],
                                   [area, born[:4], born[4:6], born[6:], tail]]))
    return draw(written(layout)), area + born + tail, area + "********" + tail


@st.composite
def ids15(draw: st.DrawFn) -> tuple[str, str, str]:
    area = draw(st.from_regex(r"[1-8][0-9]{5}", fullmatch=True))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31))).strftime("%y%m%d")
    tail = draw(digits(3))
    layout = draw(st.sampled_from([[area + born + tail], [area, born, tail]]))
    return draw(written(layout)), area + born + tail, area + "******" + tail


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str, str]:
    number = draw(st.integers(16, 19).flatmap(digits))
    fours = [number[i:i + 4] for i in range(0, len(number), 4)]
    text = draw(written(fours, one_gap=True))
    if len(number) == 18 and unicodedata.normalize("NFKC", text) == number:
        return text, number, number[:6] + "*" * 8 + number[-4:]  # 18 digits in one piece: masked as an ID
    return text, number, number[:4] + "*" * (len(number) - 8) + number[-4:]


PRIVATE = st.one_of(mobiles(), landlines(), ids18(), ids15(), cards())


@EXAMPLES
@given(PRIVATE, AROUND, AROUND)
@example(("13812345678", "13812345678", "138****5678"), "电话", "没人接")
@example(("+86 138 1234 5678", "13812345678", "138****5678"), "", "")
@example(("１３８１２３４５６７８", "13812345678", "138****5678"), "打", "")
@example(("0755 1234 5678", "075512345678", "****5678"), "", "")
@example(("(021)12345678", "02112345678", "****5678"), "", "")
@example(("110101 19900307 1234", "110101199003071234", "110101********1234"), "身份证", "")
@example(("11010119900307123x", "11010119900307123x", "110101********123x"), "", "")
@example(("6222 0212 3456 7890", "6222021234567890", "6222********7890"), "卡号", "")
@example(("138/1234/5678", "13812345678", "138/****/5678"), "电话", "")
def test_private_numbers_never_survive(number: tuple[str, str, str], before: str, after: str) -> None:
    text, digits_of, shown = number
    masked = mask_private(before + text + after)
    assert masked.startswith(before) and masked.endswith(after), "the words around the number stay"
    assert digits_of.upper() not in re.sub(r"[^0-9X]", "", plain(masked).upper())
    assert shown in plain(masked), "enough is kept to recognise one's own number"
    assert plain(masked).count("*") == shown.count("*"), "exactly the middle digits are hidden"
    assert mask_private(masked) == masked, "masking twice changes nothing"


@EXAMPLES
@given(st.lists(PRIVATE, min_size=2, max_size=4), st.lists(AROUND.filter(bool), min_size=5, max_size=5))
def test_several_numbers_in_one_message_are_all_masked(numbers: list[tuple[str, str, str]], words: list[str]) -> None:
    text = "".join(word + number[0] for word, number in zip(words, numbers, strict=False)) + words[-1]
    masked = plain(mask_private(text))
    for _, digits_of, shown in numbers:
        assert digits_of.upper() not in masked.upper() and shown in masked


INNOCENT = [
    "3栋2单元502", "3栋2单元502室家里马桶堵了", "12-3-602", "12-3-602的水管漏了", "5号楼1单元1201室",
    "2026-12-01", "2026年12月1日", "2026.12.01", "2026/12/1", "12月1号上午", "2026-12-01 14:30",
    "14:30", "08:00-18:00", "下午3点半", "营业时间 0830-1130 1400-1730", "0800-1200 1400-1800",
    "200元", "物业费1,280.50元", "¥3600", "押金 12000 元", "#12", "#12 和 #305 是同一个问题", "工单#1024已办结",
    "打12345热线", "报警110，火警119，急救120", "3栋 502 和 503 都停水了", "第3次了，从2025年就开始",
    "电梯1号 2号都坏了", "B2层停车位 B2-118", "温度38.5度", "身高170体重65", "共3户，每户200元，合计600元",
    "3栋2单元502 2026-12-01 14:30 200元 #12", "５栋３单元６０２", "２０２６年１２月１日", "",
]


@pytest.mark.parametrize("text", INNOCENT)
def test_the_numbers_of_daily_life_pass_untouched(text: str) -> None:
    assert mask_private(text) == text


@st.composite
def everyday(draw: st.DrawFn) -> str:
    """A house number, a date, a time, an amount or an order number, in the ways residents write them."""
    b, u, floor, door = draw(st.integers(1, 40)), draw(st.integers(1, 6)), draw(st.integers(1, 33)), draw(
        st.integers(1, 8))
    room = f"{floor}{door:02d}"
    day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    amount, cents = draw(st.integers(1, 99999)), draw(st.integers(0, 99))
    return draw(st.sampled_from([
        f"{b}栋{u}单元{room}", f"{b}-{u}-{room}", f"{b}号楼{u}单元{room}室", f"{b}幢{room}",
        f"{day:%Y-%m-%d}", f"{day.year}年{day.month}月{day.day}日", f"{day:%Y.%m.%d}", f"{day.month}月{day.day}号",
        f"{day:%Y-%m-%d} {hour:02d}:{minute:02d}", f"{hour:02d}:{minute:02d}", f"{hour}点{minute}分",
        f"{amount}元", f"¥{amount}.{cents:02d}", f"{amount:,}元", f"{amount}块钱", f"#{amount}", f"工单#{amount}",
    ]))


@EXAMPLES
@given(st.lists(everyday(), min_size=1, max_size=5), st.sampled_from([" ", "，", "、", "；", " 和 ", "\n", "到"]),
       st.booleans())
def test_generated_everyday_numbers_pass_untouched(parts: list[str], joint: str, wide: bool) -> None:
    text = joint.join(parts)
    text = full_width(text) if wide else text
    assert mask_private(text) == text


def test_a_spaced_phone_and_id_never_reach_the_group(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 3栋灯坏 +86 138-1234-5678")
    hood.say("张书记", "/派单 #1 @刘师傅")
    hood.say("刘师傅", "/退单 #1 身份证110101 19900307 123X 座机(021)87654321 都打不通")
    group = plain("\n".join(p.text for p in hood.chat.bot_said("阳光小区业主群")))
    assert "12345678" not in group and "19900307" not in group and "87654321" not in group
    assert "138****5678" in group and "110101********123X" in group
