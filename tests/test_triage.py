"""Triage as other tools see it: the `linli triage` JSON lines, the place parser, the held-out figures,
training and evaluating a community model from a 台账 CSV, dispatchers' corrections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.triage import Triage, current_model, triage, use_model
from handlers.triage.corrections import example_from
from handlers.triage.dataset import DataError, example, read, read_all
from handlers.triage.evaluate import BARS, below, evaluate
from handlers.triage.features import readable
from handlers.triage.location import parse_location
from handlers.triage.model import ModelError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "triage"
KEYS = {"is_request", "category", "urgency", "matter", "location", "confidence", "action"}


def linli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=env)


def test_linli_triage_writes_one_json_line_per_input_in_order() -> None:
    lines = [
        {"text": "3栋2单元楼道灯坏了，晚上黑漆漆的"},
        {"text": "收到，谢谢"},
        "this line is not JSON",
        {"text": "電梯困人！5號樓，快來人"},
        {"text": "The lift in block 3 is stuck again, please send someone"},
        {"text": "[图片]"},
        {"text": "[图片] 垃圾站旁边的垃圾堆成山了 🤢🤢"},
        {"text": "+1"},
        {"text": "【通知】明天上午9点到12点3号楼停水"},
        {"text": "厨房一股煤气味，不敢开火😱"},
    ]
    stdin = "".join((json.dumps(line, ensure_ascii=False) if isinstance(line, dict) else line) + "\n"
                    for line in lines)
    done = linli("triage", stdin=stdin)
    assert done.returncode == 1 and "line 3" in done.stderr, "a bad line is named, then the exit says so"
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(verdicts) == len(lines) - 1, "every good line is still judged"
    for row in verdicts:
        assert set(row) == KEYS
        assert set(row["location"]) == {"building", "unit", "room"}
        assert 0.0 <= row["confidence"] <= 1.0
    lamp, thanks, lift, english, photo, caption, plus_one, notice, gas = verdicts
    assert (lamp["is_request"], lamp["category"], lamp["location"]) == \
        (True, "facilities", {"building": "3", "unit": "2", "room": None})
    assert lamp["matter"] in ("minor", "major", "private") and lamp["urgency"] in ("red", "yellow", "blue")
    assert thanks == {"is_request": False, "category": None, "urgency": None, "matter": None,
                      "location": {"building": None, "unit": None, "room": None}, "confidence": thanks["confidence"],
                      "action": "ignore"}
    assert (lift["is_request"], lift["category"], lift["urgency"], lift["location"]["building"]) == \
        (True, "facilities", "red", "5"), "traditional Chinese reads as simplified"
    assert (english["is_request"], english["category"], english["location"]["building"]) == (True, "facilities", "3")
    assert not photo["is_request"] and not plus_one["is_request"] and not notice["is_request"]
    assert (caption["is_request"], caption["category"]) == (True, "sanitation"), "a photo's caption is read"
    assert (gas["is_request"], gas["category"], gas["urgency"]) == (True, "safety", "red")


@pytest.mark.parametrize(("text", "kwargs", "place"), [
    ("3号楼电梯坏了", {}, ("3", None, None)),
    ("3栋2单元501漏水", {}, ("3", "2", "501")),
    ("三栋楼道灯不亮", {}, ("3", None, None)),
    ("十三号楼的电梯", {}, ("13", None, None)),
    ("3幢门口", {}, ("3", None, None)),
    ("18#楼门禁坏了", {}, ("18", None, None)),
    ("3座大堂", {}, ("3", None, None)),
    ("3-2-501 家里停水", {}, ("3", "2", "501")),
    ("4-2单元门口的台阶坏了", {}, ("4", "2", None)),
    ("2单元3楼楼道灯坏了", {}, (None, "2", None)),
    ("B区5栋垃圾满了", {}, ("B5", None, None)),
    ("5號樓停電", {}, ("5", None, None)),
    ("The lift in block 3 is stuck", {}, ("3", None, None)),
    ("Building 12 has no water", {}, ("12", None, None)),
    ("Block B lift broken, flat 1203", {}, ("B", None, "1203")),
    ("cars block a lane every night", {}, (None, None, None)),
    ("我住1704 水费抄错了", {}, (None, None, "1704")),
    ("我们在7号楼 120还没到", {}, ("7", None, None)),
    ("一栋楼都停电了", {}, (None, None, None)),
    ("1-3号楼明天停水", {}, (None, None, None)),
    ("8-12点停水", {}, (None, None, None)),
    ("9栋停水了", {"buildings": {"3", "5"}}, (None, None, None)),
    ("3栋2单元停水了", {"buildings": {"3栋", "5"}}, ("3", "2", None)),
    ("西区3栋停水", {"buildings": {"3"}}, ("3", None, None)),
])
def test_the_place_parser_reads_how_residents_write(text: str, kwargs: dict, place: tuple) -> None:
    found = parse_location(readable(text), **kwargs)
    assert (found.building, found.unit, found.room) == place


def test_a_building_the_community_lacks_is_unknown_and_landmarks_are_found() -> None:
    found = parse_location("9栋停水了", buildings={"3", "5"})
    assert found.building is None and found.unknown_building == "9"
    assert parse_location("北门的道闸坏了", landmarks=["北门", "地下车库"]).landmark == "北门"
    verdict = triage("北门的道闸又坏了，车出不去", landmarks=["北门"], buildings={"3"})
    assert verdict.is_request and verdict.location.landmark == "北门"


def test_held_out_split_is_above_the_bars() -> None:
    examples = read_all([DATA / "requests-test.jsonl", DATA / "chatter-test.jsonl"])
    report = evaluate(examples, triage)
    assert not below(report, BARS), below(report, BARS)
    assert report["messages"] == 621


def test_explicit_reports_and_odd_input() -> None:
    assert triage("[图片]", explicit=True).is_request
    assert triage("收到", explicit=True).confidence == 1.0
    for text in ("", "   ", "😀😀😀", "x" * 50_000, "\u200b\u202e", "[图片][图片]", "同上+1", "我也是！"):
        verdict = triage(text)
        assert isinstance(verdict, Triage) and not verdict.is_request
    long = triage("3栋楼道灯坏了 " + "很黑 " * 5000)
    assert long.is_request and long.location.building == "3"


def test_train_and_eval_a_community_model_from_a_chinese_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "台账.csv"
    ledger.write_text(
        "内容,是否工单,类别,紧急程度,事项分类,楼栋,单元,房号\n"
        "3栋2单元楼道灯坏了,是,公共设施,蓝,小事,3栋,2,\n"
        "5号楼电梯困人了 快来,是,公共设施,红,大事,5,,\n"
        "垃圾站的垃圾三天没人清,是,环境卫生,蓝,小事,,,\n"
        "楼上漏水到我家 楼上不认,是,邻里纠纷,黄,小事,,,\n"
        "收到 谢谢,否,,,,,,\n"
        "【通知】明天停水,否,,,,,,\n"
        "厨房有煤气味,是,治安消防,红,大事,,,\n"
        "对面装修天天砸墙,是,噪音扰民,蓝,小事,,,\n",
        encoding="utf-8-sig",  # as a spreadsheet saves it
    )
    corrections = tmp_path / "corrections.jsonl"
    corrections.write_text(json.dumps(example_from("7栋门口的共享单车堆成山了", "停车交通", "蓝", "小事", "7栋"),
                                      ensure_ascii=False) + "\n", encoding="utf-8")
    model = tmp_path / "community.npz"
    done = linli("triage", "train", "--data", str(ledger), "--data", str(corrections), "--out", str(model))
    assert done.returncode == 0, done.stderr + done.stdout
    assert model.exists() and model.stat().st_size < 5_000_000
    done = linli("triage", "eval", "--data", str(ledger), "--model", str(model), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["messages"] == 8 and report["requests"] == 6
    assert report["request"]["f1"] == 1.0 and report["building_accuracy"] == 1.0
    assert set(report["confusion"]["category"]) == {"facilities", "sanitation", "dispute", "safety", "noise"}
    done = linli("triage", "eval", "--data", str(ledger), "--model", str(model))
    assert done.returncode == 0 and "request F1" in done.stdout and "category" in done.stdout
    env = {**os.environ, "LINLI_TRIAGE_MODEL": str(model)}
    done = linli("triage", stdin='{"text": "3栋楼道灯坏了"}\n', env=env)
    assert json.loads(done.stdout)["category"] == "facilities", "the stream uses the community's model"
    try:
        use_model(model)
        assert current_model().meta["own_examples"] == 9
        assert triage("5号楼电梯困人了 快来").urgency == "red"
    finally:
        use_model(None)
    assert current_model().meta.get("base") is None, "back on the shipped model"


def test_bad_training_files_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("内容,类别,紧急程度\n楼道灯坏了,公共设施,很急很急\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:2"):
        read(bad)
    done = linli("triage", "train", "--data", str(bad), "--out", str(tmp_path / "m.npz"))
    assert done.returncode == 2 and "bad.csv:2" in done.stderr
    only_requests = tmp_path / "requests.jsonl"
    only_requests.write_text('{"text": "楼道灯坏了", "category": "公共设施"}\n', encoding="utf-8")
    done = linli("triage", "train", "--data", str(only_requests), "--no-base", "--out", str(tmp_path / "m.npz"))
    assert done.returncode == 2 and "both requests and other messages" in done.stderr
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"broken\.npz"):
        use_model(broken)
    assert triage("3栋楼道灯坏了").is_request, "a failed switch keeps the model in use"


def test_labels_in_codes_or_chinese_names_and_corrections() -> None:
    row = {"内容": "三号楼电梯坏了", "是否工单": "是", "类别": "公共設施", "紧急程度": "黄色", "事项分类": "小事",
           "楼栋": "三号楼", "单元": "2单元", "房号": "501室"}
    item = example(row)
    assert (item.category, item.urgency, item.matter, item.building, item.unit, item.room) == \
        ("facilities", "yellow", "minor", "3", "2", "501")
    fixed = example_from("5栋有人在楼道充电 电话13812345678", "治安消防", "黄", "大事", "5栋", None, None)
    assert fixed == {"text": "5栋有人在楼道充电 电话138****5678", "is_request": True, "category": "safety",
                     "urgency": "yellow", "matter": "major", "building": "5", "unit": None, "room": None,
                     "source": "correction"}
    with pytest.raises(ValueError):
        example_from("x", "facilities", "purple", "minor")


def test_the_shipped_model_is_small_and_loads_without_scikit_learn() -> None:
    shipped = ROOT / "handlers" / "triage" / "default_model.npz"
    assert shipped.stat().st_size < 5_000_000
    script = ("import sys, time; t = time.perf_counter(); from handlers.triage import triage; "
              "v = triage('3栋2单元楼道灯坏了'); ms = (time.perf_counter() - t) * 1000; "
              "assert v.is_request and v.category == 'facilities', v; "
              "assert 'sklearn' not in sys.modules, 'scikit-learn is for training only'; print(ms)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1500


@pytest.mark.parametrize("text", [
    "刚才好像闻到一股煤气味 也不知道是哪家的", "对面楼阳台在冒烟 不知道咋回事", "隔壁老太太三天没开门了 敲门也没人应",
    "楼上小孩爬到窗台外面了！！", "5栋门口那个井盖没了 黑乎乎一个洞", "小区门口两个人吵得很凶 要打起来了",
    "the AC bracket on block 2 is hanging loose over the path", "i can smell gas in the stairwell lol is that normal",
    "我爸胸口痛 喘不上气", "老婆羊水破了 车被堵在车库出不去",
])
def test_danger_is_never_ignored(text: str) -> None:
    verdict = triage(text)
    assert verdict.action != "ignore"
    assert verdict.urgency == "red" or verdict.possible_emergency, verdict
