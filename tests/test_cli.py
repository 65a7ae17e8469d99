"""The `linli` command as a newcomer uses it: demo, console, stats, triage, bench."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.environment import without_linli_settings

ROOT = Path(__file__).resolve().parent.parent


def linli(*args: str, stdin: str = "", env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environment = {**without_linli_settings(), "COLUMNS": "160", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, env=environment, timeout=300)


def readme_walkthrough() -> list[tuple[str, str | None]]:
    """The console lines the README shows after `linli demo --db demo.db`, each with the answer it promises."""
    shown = re.findall(r"^\s*\S+@阳光小区业主群> (.+)$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    steps = []
    for line in shown:
        said, _, promised = line.partition("# →")
        steps.append((said.strip(), promised.strip() or None))
    return steps


def test_the_readme_walkthrough_works_on_the_demos_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert linli("demo", "--db", str(db)).returncode == 0
    steps = readme_walkthrough()
    assert len(steps) >= 8, "the README shows a walk through the console"
    stdin = "".join(said + "\n" for said, _ in steps) + "/quit\n"
    done = linli("console", stdin=stdin, env={"LINLI_DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stdout.split())  # a card's lines read as one
    for said, promised in steps:
        if promised:
            assert promised in shown, f"the README promises {promised!r} after {said!r}:\n{done.stdout}"


def test_version() -> None:
    done = linli("--version")
    assert done.returncode == 0 and re.fullmatch(r"linli \d+\.\d+\.\d+\n", done.stdout)


@pytest.mark.parametrize(("env", "args", "named"), [
    ({"LINLI_CONFIG": "/no/such/linli.toml"}, ["stats"], "LINLI_CONFIG"),
    ({"LINLI_LOG_LEVEL": "LOUD"}, ["stats"], "LINLI_LOG_LEVEL"),
    ({"LINLI_DATABASE_URL": "postgresql+psycopg://linli@127.0.0.1:1/linli"}, ["stats"], "127.0.0.1:1"),
    ({"LINLI_DATABASE_URL": "mysql://db/linli"}, ["stats"], "LINLI_DATABASE_URL"),
    ({}, ["export", "/nonexistent/dir/x.xlsx"], "/nonexistent/dir"),
    ({}, ["export", "ledger.csv"], ".xlsx"),
    ({}, ["run"], "LINLI_TELEGRAM_TOKEN"),
    ({"LINLI_CONFIG": "/no/[/]such.toml"}, ["stats"], "/no/[/]such.toml"),
    ({"LINLI_DATABASE_URL": "sqlite:///notes.txt"}, ["stats"], "notes.txt is no SQLite database"),
], ids=["missing config", "log level", "postgres refuses", "not a database", "no folder", "not xlsx", "no transport",
        "markup in a path", "a file that is no database"])
def test_a_bad_setting_stops_with_one_line(env: dict[str, str], args: list[str], named: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a shopping list, not a database\n", encoding="utf-8")
    done = linli(*args, env=env, cwd=tmp_path)
    said = done.stderr.strip()
    assert done.returncode == 2 and not done.stdout, (done.stdout, said)
    assert named in said and "Traceback" not in said
    assert len(said.splitlines()) == 1 or len(" ".join(said.split())) <= 160 * 2, said
    assert not (tmp_path / "linli.db").exists(), "a failed start leaves no empty database behind"


def test_stats_reads_at_80_columns(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert linli("demo", "--db", str(db)).returncode == 0
    done = linli("stats", env={"LINLI_DATABASE_URL": f"sqlite:///{db}", "COLUMNS": "80"}, cwd=tmp_path)
    assert done.returncode == 0
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    for whole in ("物业维修组", "网格员队伍", "响应率", "解决率", "满意率", "100.0%"):
        assert whole in done.stdout, f"{whole!r} is cut at 80 columns"


def test_bench_never_writes_into_the_configured_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert linli("demo", "--db", str(db)).returncode == 0
    before = db.read_bytes()
    done = linli("bench", "--only", "rates", "--orders", "500", "--json",
                 env={"LINLI_DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rates"]["counted"] == 500, "measured on a database of its own"
    assert db.read_bytes() == before
    refused = linli("bench", "--only", "rates", "--db", f"sqlite:///{db}", cwd=tmp_path)
    assert refused.returncode == 2 and "holds orders" in refused.stderr
    assert db.read_bytes() == before


def test_demo_plays_the_whole_loop_and_keeps_its_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = linli("demo", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "maximum number of running instances" not in done.stdout + done.stderr
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


def test_bench_runs_every_default_benchmark_in_one_process() -> None:
    """Each benchmark on its own scratch database: none leaves state that breaks the next."""
    done = linli("bench", "--json", "--messages", "60", "--orders", "2000")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures["intake"]) >= {"per_s", "p50_ms", "p99_ms", "baseline_per_s", "ratio"}
    assert set(figures["sweep"]) >= {"orders", "ms"} and figures["sweep"]["orders"] == 2000
    assert set(figures["rates"]) >= {"orders", "ms"} and figures["rates"]["counted"] == 2000
    assert figures["lateness"]["reminders"] == figures["lateness"]["expected"]
    assert figures["triage"]["per_s"] > 0 and figures["export"]["orders"] == 2000
    assert figures["rss_mb"] > 0


def test_bench_refuses_an_unknown_name() -> None:
    done = linli("bench", "--only", "nonsense")
    assert done.returncode == 2 and "unknown benchmark" in done.stderr


def test_bench_on_postgresql_works_in_a_schema_of_its_own_and_drops_it(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect, text

    done = linli("bench", "--only", "rates", "--only", "intake", "--messages", "40", "--orders", "300", "--json",
                 "--db", postgres_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["rates"]["counted"] == 300 and figures["intake"]["loop_stall_ms"] >= 0
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        schemas = connection.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'linli_bench%'"))
        assert not schemas.all(), "the scratch schemas are dropped"
        assert not inspect(connection).has_table("work_order"), "nothing written outside them"
    engine.dispose()
