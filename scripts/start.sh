#!/usr/bin/env bash
# Sets up and builds eyrie, then serves the bundled default model on http://127.0.0.1:8080
# (TGI, OpenAI and SageMaker routes, WebSocket at /ws) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/tools/eyrie serve --config config/serving.properties "$@"
