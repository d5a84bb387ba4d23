"""Every setting is documented for operators, with its environment variable."""

from __future__ import annotations

from pathlib import Path

from dargah.core.settings import documented_settings, settings_from_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "operators.md"


def test_every_setting_appears_in_the_operators_guide() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [env for _name, env, _help in documented_settings() if f"`{env}`" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_settings_come_from_the_environment_given() -> None:
    s = settings_from_env(
        {"DARGAH_PORT": "9123", "DARGAH_SEAL_EVERY_SECONDS": "0.5", "DARGAH_HOME": "/x"}
    )
    assert s.port == 9123 and s.seal_every_seconds == 0.5 and str(s.home) == "/x"


def test_a_postgresql_url_uses_the_psycopg_driver() -> None:
    s = settings_from_env({"DARGAH_DATABASE_URL": "postgresql://u@h/db"})
    assert s.db_url == "postgresql+psycopg://u@h/db" and not s.is_sqlite
