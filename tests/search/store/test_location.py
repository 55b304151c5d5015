"""The store's URL: one normalised value per run, shown without its password."""

from __future__ import annotations

import pytest

from search.store.location import absolute_sqlite_url, default_storage_url, redact_url, storage_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/s.db", "sqlite:///{cwd}/rel/s.db"),
        ("sqlite:////abs/s.db", "sqlite:////abs/s.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:p%40ss@h/db"),
        ("not a url", "not a url"),
    ],
)
def test_absolute_sqlite_url(tmp_path, monkeypatch, url, expected):
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite_url(url) == expected.format(cwd=tmp_path)


def test_storage_url_is_the_one_normalised_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        storage_url(None) == default_storage_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/unet-search.db"
    )
    assert storage_url("sqlite:///a.db") == f"sqlite:///{tmp_path}/a.db"
    assert storage_url(storage_url("sqlite:///a.db")) == storage_url("sqlite:///a.db")


def test_redact_url_hides_the_password_even_when_malformed():
    assert redact_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert "secret" not in redact_url("postgresql+psycopg://u:secret@h:notaport/db")
