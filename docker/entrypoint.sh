#!/bin/sh
# Entrypoint of the app image.
#   verify        load every baked model with the real loaders, network blocked (exit 0/1)
#   process ...   the reference app: podcast episode -> transcript, speakers, summary (JSON)
#   anything else exec'd as is
set -eu
if [ "${1:-}" = verify ]; then
  shift
  if [ -n "${MODELBAKE_PROFILE:-}" ]; then
    set -- --profile "$MODELBAKE_PROFILE" "$@"
  fi
  exec python -m modelbake.cli verify --models /models --manifest /app/models.toml "$@"
fi
if [ "${1:-}" = process ]; then
  exec python -m podcast_pipeline "$@"
fi
if [ "$#" -eq 0 ]; then
  set -- python -m modelbake.cli --help
fi
exec "$@"
