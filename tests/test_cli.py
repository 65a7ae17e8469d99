"""The `linli` command as a newcomer uses it: demo, console, stats, triage, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def linli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
    environment.update({"COLUMNS": "160", **(env or {})})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, env=environment, timeout=120)


def test_demo_plays_the_whole_loop_and_keeps_its_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = linli("demo", "--db", str(db))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for moment in ("已登记", "The lift in block 5", "已派给", "被陈师傅退回", "距办结时限还有", "已超过",
                   "已办结（附照片）", "得到 2 星评价，已重新打开", "Thanks for rating", "积分榜",
                   "响应率", "解决率", "满意率", "三率"):
        assert moment in out, f"the demo never shows {moment!r}"
    assert db.exists()
    stats = linli("stats", "--by", "team", env={"LINLI_DATABASE_URL": f"sqlite:///{db}"})
    assert stats.returncode == 0, stats.stderr
    assert "物业维修组" in stats.stdout and "满意率" in stats.stdout
    console = linli("console", "--as", "张书记", stdin="/统计\n/as 王阿姨\n/我的\n/quit\n",
                    env={"LINLI_DATABASE_URL": f"sqlite:///{db}", "LINLI_CONFIG": str(ROOT / "linli.example.toml")})
    assert console.returncode == 0, console.stderr
    assert "新单 4" in console.stdout and "您现在没有进行中的工单" in console.stdout


def test_triage_speaks_json_lines(tmp_path: Path) -> None:
    lines = [{"text": "3栋2单元楼道灯坏了"}, {"text": "收到，谢谢"}, {"text": "厨房一股煤气味，不敢开火"}]
    stdin = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\nnot json\n"
    done = linli("triage", stdin=stdin)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 3
    assert done.returncode == 1 and "line 4" in done.stderr  # every good line judged, the bad one named
    assert set(results[0]) == {"is_request", "category", "urgency", "matter", "location", "confidence", "action"}
    assert set(results[0]["location"]) == {"building", "unit", "room"}
    assert results[0]["is_request"] and results[0]["location"]["building"] == "3"
    assert results[1]["is_request"] is False and results[1]["category"] is None
    assert results[2]["urgency"] == "red" and results[2]["category"] == "safety"


def test_bench_prints_one_json_object() -> None:
    done = linli("bench", "--json", "--messages", "60", "--orders", "2000", "--only", "intake", "--only", "sweep",
                 "--only", "rates")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures["intake"]) >= {"per_s", "p50_ms", "p99_ms", "baseline_per_s", "ratio"}
    assert set(figures["sweep"]) >= {"orders", "ms"} and figures["sweep"]["orders"] == 2000
    assert set(figures["rates"]) >= {"orders", "ms"} and figures["rates"]["counted"] == 2000
    assert figures["rss_mb"] > 0


def test_bench_refuses_an_unknown_name() -> None:
    done = linli("bench", "--only", "nonsense")
    assert done.returncode == 2 and "unknown benchmark" in done.stdout


def test_run_without_any_transport_says_what_to_set(tmp_path: Path) -> None:
    env = {"LINLI_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}"}
    for name in ("LINLI_TELEGRAM_TOKEN", "LINLI_MATRIX_HOMESERVER"):
        env[name] = ""
    done = subprocess.run([sys.executable, "-m", "bot.cli", "run"], cwd=ROOT, capture_output=True, text=True,
                          env={k: v for k, v in {**os.environ, **env}.items() if v}, timeout=60)
    assert done.returncode == 2
    assert "LINLI_TELEGRAM_TOKEN" in done.stdout
