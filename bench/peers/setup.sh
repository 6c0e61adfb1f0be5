#!/bin/sh
# Create bench/peers/.venv with the peers (dlt, sling) pinned in requirements.txt.
# Idempotent: reinstalls only when requirements.txt changed since the last install.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
stamp="$venv/.installed-stamp"
python=${PYTHON:-python3}
if [ -f "$stamp" ] && [ ! "$here/requirements.txt" -nt "$stamp" ]; then
	exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
touch "$stamp"
