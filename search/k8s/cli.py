"""Kubernetes glue on the command line: render an overlay of ``k8s/`` for one study, and wait for the store.

    python -m search.k8s render workers --study unet-lr --workers 4 --gpus 1 \\
        --image registry.example.com/unet-search:0.1.0 | kubectl apply -f -
    python -m search.k8s wait-store --timeout 600

``render`` prints the overlay :func:`search.k8s.render.render` builds; ``wait-store`` is the pods' init
container (:func:`search.k8s.store_wait.wait_for_store`): it returns once the store at
``$UNET_SEARCH_STORAGE`` accepts connections.

Exit status: 0 done, 2 bad input, 1 anything else (kubectl failed, the store stayed unreachable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from search.k8s.render import OVERLAYS, RenderError, render
from search.k8s.store_wait import wait_for_store
from search.spec.schema import SpecError
from search.store.errors import StoreError
from search.store.location import STORAGE_ENV, StoreLocation
from unet.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.k8s", description="Kubernetes manifests for unet-search."
    )
    commands = p.add_subparsers(dest="command", required=True)
    r = commands.add_parser(
        "render", help="print an overlay of k8s/ for a study (pipe it to kubectl apply -f -)"
    )
    r.add_argument("overlay", help=f"one of {', '.join(OVERLAYS)}")
    r.add_argument("--study", help="a shipped study's name or the path of your study file")
    r.add_argument("--workers", type=int, help="worker pods (workers, ray)")
    r.add_argument("--gpus", type=int, help="GPUs per worker pod, 0 for CPUs only (workers, ray)")
    r.add_argument("--image", help="the unet-search image, e.g. registry.example.com/unet-search:0.1.0")
    r.add_argument("--namespace", help="namespace of every object (default: kubectl's current one)")
    w = commands.add_parser("wait-store", help="wait until the study store accepts connections")
    w.add_argument(
        "--storage", default=os.environ.get(STORAGE_ENV), help=f"store URL (default: ${STORAGE_ENV})"
    )
    w.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most (default 600)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "render":
            print(
                render(
                    args.overlay,
                    study=args.study,
                    workers=args.workers,
                    gpus=args.gpus,
                    image=args.image,
                    namespace=args.namespace,
                ),
                end="",
            )
            return 0
        if not args.storage:
            raise ConfigError(f"no store URL: set ${STORAGE_ENV} (from the Secret) or give --storage")
        try:
            location = StoreLocation.parse(args.storage)
        except StoreError as e:
            raise ConfigError(str(e)) from e  # a bad URL is bad input (2), an unreachable store is not (1)
        attempts = wait_for_store(location, timeout=args.timeout)
        print(f"store {location.shown} reachable (attempt {attempts})", file=sys.stderr)
        return 0
    except (ConfigError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RenderError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
