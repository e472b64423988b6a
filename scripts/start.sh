#!/usr/bin/env bash
# Start the product: migrate + seed the database, run a worker beside the Streamlit app.
source "$(dirname "$0")/_venv.sh" run
.venv/bin/python -m engine init
.venv/bin/python -m engine worker &
WORKER=$!
# Only this machine can reach the app unless STUDIO_ADDRESS says otherwise (e.g. 0.0.0.0 behind a proxy).
.venv/bin/python -m streamlit run app.py --server.address "${STUDIO_ADDRESS:-127.0.0.1}" --server.port "${STUDIO_PORT:-8501}" \
  --server.headless true "$@" &
APP=$!
# Ctrl-C or a TERM to this script stops both; if either one dies, the other is stopped too.
trap 'kill $WORKER $APP 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
echo "Open http://${STUDIO_ADDRESS:-127.0.0.1}:${STUDIO_PORT:-8501}  (app pid $APP, worker pid $WORKER)"
wait -n $WORKER $APP
