#!/usr/bin/env bash
# Set up tvm-bsp on a fresh Debian machine with Python 3.11: apt packages, the .venv with the
# pinned TVM/torch stack, and (unless --no-targets) the aarch64 emulator, POCL and speech tools.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh [--no-targets]
set -euo pipefail
cd "$(dirname "$0")/.."
targets=1
for arg in "$@"; do
  case "$arg" in
    --no-targets) targets=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    [ -n "${TVM_BSP_APT_UPDATED:-}" ] || { $sudo_ apt-get update -qq; export TVM_BSP_APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
export -f apt_install 2>/dev/null || true

PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
"$PY" - <<'PYEOF'
import sys
if sys.version_info[:2] != (3, 11):
    raise SystemExit(f"tvm-bsp needs Python 3.11 (torch 2.13.0 CPU wheel), found {sys.version.split()[0]}")
PYEOF

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
pip_() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored" || true; }
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null; then
  echo "== installing torch 2.13.0 (CPU build)"
  links=()
  [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
  pip_ "${links[@]}" "torch==2.13.0"
fi
echo "== installing tvm-bsp and its pinned dependencies into .venv"
pip_ -e ".[test,bench]"
.venv/bin/python -c 'import torch, tvm; assert torch.__version__ == "2.13.0+cpu", torch.__version__; print("torch", torch.__version__, "| tvm", tvm.__version__)'

if [ "$targets" = 1 ]; then
  for s in setup_speech.sh setup_opencl.sh setup_aarch64_emulator.sh; do
    if [ -f "scripts/$s" ]; then
      echo "== scripts/$s"
      $sudo_ env VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" bash "scripts/$s"
    fi
  done
fi
echo "== setup done"
