"""``python -m trainlens sync PATH…``: uploads spooled runs (see
:mod:`trainlens.spool`)."""

import argparse
import sys

from .spool import sync


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainlens")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync", help="upload spooled runs (files or directories)")
    p.add_argument("paths", nargs="+", help="spool files or directories (e.g. ./trainlens-spool)")
    p.add_argument("--server", help="the server (default $TRAINLENS_SERVER or http://127.0.0.1:8080)")
    p.add_argument("--force", action="store_true", help="upload files already synced again")
    args = parser.parse_args(argv)
    failed = sync(args.paths, server=args.server, force=args.force)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
