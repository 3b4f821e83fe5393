#!/usr/bin/env bash
# The name the original README uses; same script.
exec bash "$(dirname "$0")/download_data.sh" "$@"
