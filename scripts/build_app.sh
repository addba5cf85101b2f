#!/usr/bin/env bash
# Build the one-folder application dist/FaceBatch/ (executables `facebatch` and, once the GUI
# module exists, `facebatch-gui`) with PyInstaller from build.spec, then print the build time and
# the bundle size. PYTHON selects the interpreter (default .venv/bin/python); it needs the
# `build` extra: pip install -e '.[build]'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller build.spec
elapsed=$(( $(date +%s) - start ))
size=$(du -sh dist/FaceBatch | cut -f1)
echo "build_app: dist/FaceBatch built in ${elapsed} s; bundle size ${size}"
