#!/usr/bin/env bash
# Start the product: migrate + seed the database, then the app, the API (provider webhooks, web chat,
# REST) and a worker, supervised together by `python -m engine start` (engine/supervisor.py): a process
# that dies is restarted, and Ctrl-C or a TERM to this script stops all three.
# Only this machine can reach them unless STUDIO_ADDRESS says otherwise (e.g. 0.0.0.0 behind a proxy);
# ports: STUDIO_PORT (app, 8501) and STUDIO_API_PORT (API, 8000). Extra arguments go to `streamlit run`.
source "$(dirname "$0")/_venv.sh" run
exec .venv/bin/python -m engine start -- "$@"
