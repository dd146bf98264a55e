#!/bin/sh
# Entrypoint of the app image.
#   verify        load every baked model with the real loaders, network blocked (exit 0/1)
#   anything else exec'd as is (the app's `process` command comes later)
set -eu
if [ "${1:-}" = verify ]; then
  shift
  if [ -n "${MODELBAKE_PROFILE:-}" ]; then
    set -- --profile "$MODELBAKE_PROFILE" "$@"
  fi
  exec python -m modelbake.cli verify --models /models --manifest /app/models.toml "$@"
fi
if [ "$#" -eq 0 ]; then
  set -- python -m modelbake.cli --help
fi
exec "$@"
