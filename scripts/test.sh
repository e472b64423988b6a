#!/usr/bin/env bash
# Install what the tests need (packages, Debian's Chromium), run ruff and mypy, then the whole test suite.
source "$(dirname "$0")/_venv.sh" test "[test]"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's Chromium (and an emoji font for screenshots) for the browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji) >/dev/null
  else
    echo "Browser tests need Chromium at /usr/bin/chromium: sudo apt-get install -y chromium" >&2
  fi
fi
# The gates first (seconds, and they fail the run): lint, then types. Configured in pyproject.toml.
echo "ruff check ..."
.venv/bin/python -m ruff check --quiet .
echo "mypy ..."
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
