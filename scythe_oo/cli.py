"""The ``scythe-oo`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from scythe_oo.definition.base import REGISTRY


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scythe-oo", description="Run scythe_oo workers and inspect experiments."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser(
        "worker",
        help="serve every Experiment found in the given modules or packages through Hatchet",
        description="Import each MODULE (recursing into packages) and serve every Experiment "
        "subclass defined there. Roles and labels come from SCYTHE_WORKER_*; the Hatchet "
        "connection from HATCHET_CLIENT_*.",
    )
    worker.add_argument("modules", nargs="+", metavar="MODULE")
    listing = sub.add_parser("list", help="list the experiments found in the given modules")
    listing.add_argument("modules", nargs="+", metavar="MODULE")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    sys.path.insert(0, "")  # like `python -m`: modules in the working directory are found
    experiments = REGISTRY.discover(args.modules)
    if not experiments:
        print(
            f"scythe-oo: no Experiment subclasses found in {', '.join(args.modules)}",
            file=sys.stderr,
        )
        return 2
    if args.command == "list":
        for cls in experiments:
            print(f"{cls.name}\t{cls.__module__}.{cls.__qualname__}")
        return 0
    from scythe_oo.engines.hatchet.worker import WorkerConfig  # loads hatchet_sdk: workers only

    WorkerConfig().start(experiments=experiments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
