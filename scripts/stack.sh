#!/bin/sh
# The production topology as processes on 127.0.0.1 (no Docker): up | down | status |
# stop NAME | start NAME | init. See scripts/stack.py and docs/operations.md.
set -e
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/stack.py "$@"
