"""Serve optuna-dashboard on a study store: ``python -m search.dashboard [--study NAME] [--storage URL]``.

The dashboard shows every study of the store with its trials, states and intermediate values (one per
epoch); a trial's stop reason, stop message and diagnosis (the label, its summary with the deciding
numbers, the advice as settings in ``diagnosis_changes`` and, when unclear, ``diagnosis_candidates``) are
its user attributes, listed on the trial's page (Trials (List), then the trial).

Why not plain ``optuna-dashboard sqlite:///...``: that opens SQLite with the driver's 5-second lock wait,
and on a file in rollback-journal mode its reads lock out the study's writes, so the running study can
fail with "database is locked" (optuna-dashboard#545). Here the store is opened by
``search.store.engine.open_storage``, which puts the file in WAL mode (readers and the writer no longer block
each other) and gives every connection a 60-second lock wait.

The server binds to 127.0.0.1 unless ``--host`` says otherwise: the dashboard can delete studies and
change trials, so anyone who can reach it can change the store. ``--port 0`` picks a free port; the
address is printed either way. Exit status: 0 stopped (Ctrl-C or SIGTERM), 2 bad input (store, study
name, address in use).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from search.checkpoints.store import DashboardArtifacts
from search.execution.signals import sigterm_as_interrupt
from search.report.data import study_names
from search.store.engine import StoreError, open_existing_storage
from search.store.errors import StoreReadOnlyError
from search.store.location import StoreLocation, add_storage_option

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as optuna-dashboard's own server: a slow page does not block the others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the log (``--verbose``), not to the terminal."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.dashboard", description="Serve optuna-dashboard on the study store."
    )
    p.add_argument("--study", help="check that this study is in the store and print its page's address")
    add_storage_option(p)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_dashboard_server(storage: optuna.storages.BaseStorage, host: str, port: int) -> WSGIServer:
    """A threaded WSGI server of optuna-dashboard on ``storage``, bound but not yet serving.

    Raises:
        OSError: the address cannot be bound (in use, unknown host, privileged port).
    """
    # The trials' kept checkpoints (search.checkpoints) are listed and downloadable from the trial pages.
    app = optuna_dashboard.wsgi(storage, artifact_store=DashboardArtifacts(storage))
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        location = StoreLocation.parse(args.storage)
        shown = location.shown
        try:
            storage = open_existing_storage(location, read_only=False)  # the dashboard can edit studies
        except StoreReadOnlyError:
            storage = open_existing_storage(location)
            print(f"note: {shown} is read-only: the dashboard shows it but cannot change it", file=sys.stderr)
        page = "/dashboard"
        if args.study is not None:
            names = study_names(storage)
            if args.study not in names:
                raise StoreError(
                    f"no study named {args.study!r} in {shown}: choose one of {', '.join(names) or '(none)'}"
                )
            page = f"/dashboard/studies/{storage.get_study_id_from_name(args.study)}"
        server = make_dashboard_server(storage, args.host, args.port)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}: choose another --port "
            f"(0 picks a free one) or --host",
            file=sys.stderr,
        )
        return 2
    host, port = str(server.server_address[0]), server.server_address[1]
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach it can delete studies and change "
            f"trials in {shown}; use --host 127.0.0.1 and an SSH tunnel unless the network is trusted",
            file=sys.stderr,
        )
    print(f"Dashboard of {shown} on http://{host}:{port}{page} (Ctrl-C stops it)", flush=True)
    try:
        with sigterm_as_interrupt():
            server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
