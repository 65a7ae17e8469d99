"""Settings: LINLI_* variables and linli.toml; a bad setting stops start-up with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_community, load_settings
from tests.neighbourhood import EXAMPLE, Neighbourhood

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINLI_DATABASE_URL", raising=False)
    assert load_settings().database_url == "sqlite:///linli.db"
    monkeypatch.setenv("LINLI_DATABASE_URL", "postgresql+psycopg://linli@db/linli")
    monkeypatch.setenv("LINLI_TELEGRAM_TOKEN", "123:abc")
    monkeypatch.setenv("LINLI_TELEGRAM_API_URL", "http://127.0.0.1:8081/bot")
    settings = load_settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.telegram_token is not None and settings.telegram_token.get_secret_value() == "123:abc"
    assert settings.telegram_api_url == "http://127.0.0.1:8081/bot"


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("LINLI_DATABASE_URL", "mysql://x", "LINLI_DATABASE_URL"),
        ("LINLI_DATABASE_URL", "not a url", "LINLI_DATABASE_URL"),
        ("LINLI_TELEGRAM_API_URL", "ftp://x", "LINLI_TELEGRAM_API_URL"),
        ("LINLI_SWEEP_SECONDS", "-1", "LINLI_SWEEP_SECONDS"),
    ],
)
def test_a_bad_setting_names_itself(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith(named)
    assert "\n" not in str(error.value)


def test_the_example_community_file_loads() -> None:
    config = load_community(EXAMPLE)
    assert config.community.name == "阳光社区"
    assert {team.code for team in config.teams} == {"wy-repair", "grid-workers", "emergency", "volunteers"}


def test_no_file_means_zero_config(tmp_path: Path) -> None:
    config = load_community(tmp_path / "missing.toml")
    assert config.teams == [] and config.community.admins_are_dispatchers


@pytest.mark.parametrize(
    "content, named",
    [
        ('[community]\nlang = "fr"\n', "community.lang"),
        ('[[teams]]\ncode = "x"\nname = "x"\nkind = "aliens"\n', "teams.0.kind"),
        ('[[teams]]\ncode = "x"\nname = "x"\nkind = "property"\nmembers = ["nobody"]\n', "nobody"),
        ('[[chats]]\nservice = "console"\nid = "g"\ngrid = "NOPE"\n', "NOPE"),
        ('[sla]\n[[sla.rules]]\nresolve = "soon"\n', "soon"),
        ("[community\n", "linli.toml"),
        ('[community]\nnmae = "typo"\n', "community.nmae"),
    ],
)
def test_a_bad_community_file_names_the_setting(tmp_path: Path, content: str, named: str) -> None:
    path = tmp_path / "linli.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError) as error:
        load_community(path)
    assert named in str(error.value)
    assert "\n" not in str(error.value)


def test_start_up_stops_with_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bot.cli", "stats"], cwd=ROOT, capture_output=True, text=True,
                          env={"LINLI_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert not done.stdout, "errors go to stderr"
    assert len(lines) == 1 and "LINLI_DATABASE_URL" in lines[0]


def test_zero_config_accepts_any_chat_and_admins_dispatch(tmp_path: Path) -> None:
    from handlers.community import zero_config

    hood = Neighbourhood(f"sqlite:///{tmp_path / 'zero.db'}", zero_config())
    hood.say("王阿姨", "/报事 门口路灯坏了", chat="随便一个群")
    hood.expect("已登记", "#1", "本群还没有绑定网格")
    hood.say("王阿姨", "/报事 电梯又坏了", chat="随便一个群")
    assert "本群还没有绑定网格" not in hood.answer(), "the bot asks to bind a chat once"
    hood.say("群主", "/派单 #1 @王师傅", chat="随便一个群")
    hood.expect("只有书记或网格长可以派单")
    hood.chat.admins.add("群主")
    hood.say("王师傅", "在的", chat="随便一个群")
    hood.say("群主", "/派单 #1 @王师傅", chat="随便一个群")
    hood.expect("#1 已派给 王师傅")
    hood.say("王师傅", "/接单 #1", chat="随便一个群")
    hood.expect("#1 王师傅已接单")
    hood.engine.dispose()


def test_a_chat_admin_dispatches_only_their_own_chat(tmp_path: Path) -> None:
    from handlers.community import zero_config

    hood = Neighbourhood(f"sqlite:///{tmp_path / 'zero.db'}", zero_config())
    hood.say("王阿姨", "/报事 门口路灯坏了", chat="3栋群")
    hood.chat.admins.add("别的群主")
    hood.say("别的群主", "/撤销 #1 不用修", chat="自己建的群")
    hood.expect("只有报事人或书记、网格长可以撤销 #1")
    hood.say("别的群主", "/派单 #1 @别的群主", chat="自己建的群")
    hood.expect("只有书记或网格长可以派单")
    assert hood.order(1).state == "reported"
    hood.engine.dispose()


def test_a_community_triage_model_that_cannot_load_stops_start_up(tmp_path: Path) -> None:
    from bot.settings import Settings
    from bot.wiring import open_core

    broken = tmp_path / "model.npz"
    broken.write_bytes(b"not a model")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", triage_model=broken)
    with pytest.raises(SettingsError, match="LINLI_TRIAGE_MODEL"):
        open_core(settings)
