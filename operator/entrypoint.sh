#!/bin/sh
# Entry point of the operator image: `llmops <args>` (default `run`), with Python output
# unbuffered so `kubectl logs` shows events as they happen.
set -eu
export PYTHONUNBUFFERED=1
exec llmops "$@"
