#!/usr/bin/env bash
# Install an OpenCL implementation that runs on the CPU (POCL) and pyopencl, so tests can
# execute the OpenCL kernels TVM generates (tvm_bsp.testing.opencl) without a GPU.
#
# Usage:  scripts/setup_opencl.sh            (apt-get needs root; pip installs into the
#                                             active venv, else <repo>/.venv, else python3)
# Idempotent: installed pieces are skipped; the last step checks that pyopencl sees a device.
#
# Environment knobs:
#   TVM_BSP_PYTHON   python whose environment receives pyopencl
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(pocl-opencl-icd ocl-icd-opencl-dev clinfo)
T0=$SECONDS
log() { printf '[setup-opencl %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[setup-opencl %3ds] ERROR: %s\n' "$((SECONDS - T0))" "$*" >&2; exit 1; }

PY="${TVM_BSP_PYTHON:-}"
if [[ -z $PY ]]; then
    if [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/python ]]; then
        PY="$VIRTUAL_ENV/bin/python"
    elif [[ -x $REPO/.venv/bin/python ]]; then
        PY="$REPO/.venv/bin/python"
    else
        PY=python3
    fi
fi

# 1. POCL, the ICD loader and clinfo from Debian.
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "apt-get install ${missing[*]} needs root"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "host packages present: ${APT_PACKAGES[*]}"
fi
log "clinfo: $(clinfo -l 2>&1 | tr '\n' ' ' | tr -s ' ')"

# 2. pyopencl into the python environment (binary wheel; it bundles its own ICD loader, which
#    reads the same /etc/OpenCL/vendors/*.icd registrations as Debian's).
if "$PY" -c "import pyopencl" 2>/dev/null; then
    log "pyopencl present in $PY"
else
    log "pip install pyopencl into $PY"
    "$PY" -m pip install --quiet --disable-pip-version-check --only-binary=:all: pyopencl
fi

# 3. A device must be visible.
"$PY" - <<'EOF' || die "pyopencl sees no OpenCL device (is /etc/OpenCL/vendors/pocl.icd there?)"
import sys

import pyopencl as cl

devices = [(p, d) for p in cl.get_platforms() for d in p.get_devices()]
for p, d in devices:
    print(f"    platform={p.name!r} device={d.name!r} version={d.version!r} "
          f"compute_units={d.max_compute_units}")
sys.exit(0 if devices else 1)
EOF
log "done ($((SECONDS - T0)) s)"
