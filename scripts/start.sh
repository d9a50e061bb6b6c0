#!/usr/bin/env bash
# Sets up and builds eyrie, then runs it on the bundled default model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/tools/eyrie generate --prompt "${EYRIE_PROMPT:-The Falcon models are}" --max-new-tokens 32 "$@"
