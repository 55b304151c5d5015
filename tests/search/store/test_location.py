"""The store's location: parsed once into one normalised value, shown without its password."""

from __future__ import annotations

import pickle

import pytest

from search.store.errors import StoreError
from search.store.location import StoreLocation, location_of, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/s.db", "sqlite:///{cwd}/rel/s.db"),
        ("sqlite:////abs/s.db", "sqlite:////abs/s.db"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:p%40ss@h/db"),
        ("mariadb+pymysql://root@h/db", "mysql+pymysql://root@h/db"),  # the dialect with atomic upserts
    ],
)
def test_parse_normalises_once(tmp_path, monkeypatch, url, expected):
    monkeypatch.chdir(tmp_path)
    location = StoreLocation.parse(url)
    assert location.secret_url() == expected.format(cwd=tmp_path)
    assert StoreLocation.parse(location.secret_url()) == location  # parsing the rendered URL changes nothing
    assert pickle.loads(pickle.dumps(location)) == location  # as the Ray workers get it


def test_default_is_the_sqlite_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = StoreLocation.parse(None)
    assert location.sqlite_path == tmp_path.resolve() / "unet-search.db"
    runs = StoreLocation.parse(None, directory=tmp_path / "runs")
    assert runs.sqlite_path == tmp_path.resolve() / "runs" / "unet-search.db"
    assert StoreLocation.parse("postgresql+psycopg://u@h/db").sqlite_path is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "is not a valid SQLAlchemy URL"),
        ("nosuchdb://x", "is not a valid SQLAlchemy URL"),
        ("sqlite:///:memory:", "in-memory SQLite database"),
        ("sqlite://", "in-memory SQLite database"),
        ("postgresql+nosuchdriver://u:s3cret@h/db", "is not a valid SQLAlchemy URL"),
    ],
)
def test_bad_urls_fail_in_parse_with_one_line(url, message):
    with pytest.raises(StoreError, match=message) as raised:
        StoreLocation.parse(url)
    assert len(str(raised.value).splitlines()) == 1 and "s3cret" not in str(raised.value)


def test_the_password_is_never_shown():
    location = StoreLocation.parse("postgresql+psycopg://u:secret@h/db")
    assert location.shown == str(location) == "postgresql+psycopg://u:***@h/db"
    assert "secret" not in repr(location)
    assert redact_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert "secret" not in redact_url("postgresql+psycopg://u:secret@h:notaport/db")


@pytest.mark.parametrize("read_only", [False, True])
def test_an_opened_store_carries_its_location_and_nobody_parses_it_again(tmp_path, monkeypatch, read_only):
    from search.checkpoints.store import store_default_location
    from search.store.claims import claim_lock
    from search.store.engine import open_storage

    location = StoreLocation.parse(f"sqlite:///{tmp_path / 'runs' / 'search.db'}")
    (tmp_path / "runs").mkdir()
    open_storage(location).engine.dispose()  # the file a read-only open needs
    storage = open_storage(location, read_only=read_only)

    def parse_again(*args, **kwargs):
        raise AssertionError("the store URL was parsed again")

    monkeypatch.setattr(StoreLocation, "parse", parse_again)
    # The engine, its pickled copy (a Ray worker's) and the read-only one all carry the parsed value.
    for engine in (storage.engine, pickle.loads(pickle.dumps(storage)).engine):
        assert location_of(engine) == location
    assert store_default_location(storage) == str(tmp_path / "runs" / "search-artifacts")
    if not read_only:
        with claim_lock(storage.engine, "study"):
            assert (tmp_path / "runs" / "search.db.lock").is_file()  # the lock file beside the database


def test_an_engine_opened_elsewhere_has_no_location(tmp_path):
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ValueError, match=r"not opened by search\.store\.engine\.open_storage"):
        location_of(engine)
