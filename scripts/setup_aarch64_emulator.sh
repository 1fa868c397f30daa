#!/usr/bin/env bash
# Set up an aarch64 (arm64) Debian bookworm root that runs under qemu-user, with the aarch64
# TVM runtime installed, so tests can execute cross-compiled TVM kernels without a phone.
#
# Usage:  sudo scripts/setup_aarch64_emulator.sh [ROOT]
#   ROOT defaults to $TVM_BSP_ARM64_ROOT, else <repo>/.cache/arm64-root (gitignored).
#
# Idempotent and resumable: every stage leaves a marker in ROOT (or a cache beside it) and is
# skipped on rerun; a finished setup only re-verifies `import tvm` (a few seconds).
# Downloads (debootstrap .debs, aarch64 wheels) are cached under <repo>/.cache so an
# interrupted run does not fetch them again.
#
# Environment knobs:
#   TVM_BSP_ARM64_ROOT   root directory (default above)
#   TVM_BSP_CACHE        download cache (default <repo>/.cache)
#   TVM_BSP_HOST_PYTHON  host python with pip for `pip download` (default: <repo>/.venv/bin/python,
#                        else python3)
#   DEBIAN_MIRROR        mirror for debootstrap (default http://deb.debian.org/debian)
#   TVM_BSP_FORCE=1      redo the python stage and the verification even if marked done
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${1:-${TVM_BSP_ARM64_ROOT:-$REPO/.cache/arm64-root}}"
CACHE="${TVM_BSP_CACHE:-$REPO/.cache}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PY_VERSION=3.11            # python3 of Debian bookworm
VENV_IN_ROOT=/opt/tvm-bsp-venv
WHEELS_IN_ROOT=/var/cache/tvm-bsp-wheels
PACKAGES=(apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy cloudpickle psutil tornado)
APT_PACKAGES=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static binfmt-support
              debootstrap)
MARKER_NAME=.tvm-bsp-emulator-ready
STAGE_DEBOOTSTRAP=.tvm-bsp-stage-debootstrap
STAGE_PYTHON=.tvm-bsp-stage-python

T0=$SECONDS
log() { printf '[setup-aarch64 %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
warn() { printf '[setup-aarch64 %4ds] WARNING: %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { printf '[setup-aarch64 %4ds] ERROR: %s\n' "$((SECONDS - T0))" "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, debootstrap and chroot need it)"
[[ $(uname -m) == x86_64 || $(uname -m) == aarch64 ]] || die "unsupported host $(uname -m)"
ROOT="$(realpath -m "$ROOT")"
CACHE="$(realpath -m "$CACHE")"
[[ $ROOT != / && $ROOT != "$REPO" ]] || die "refusing ROOT=$ROOT"

# Every mount point at or below $1, deepest first.
mounts_under() {
    local dir="$1"
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

# Unmount everything below $1 (debootstrap may leave /proc, /sys mounted after a failure).
unmount_under() {
    local mp
    while read -r mp; do
        [[ -n $mp ]] || continue
        log "unmounting leftover mount $mp"
        umount "$mp" 2>/dev/null || umount -l "$mp" || true
    done < <(mounts_under "$1")
}

# rm -rf that never follows into a mounted file system (e.g. a leaked bind mount of /dev).
safe_rmtree() {
    local dir="$1"
    [[ -e $dir ]] || return 0
    unmount_under "$dir"
    if [[ -n $(mounts_under "$dir") ]]; then
        die "mounts remain under $dir; unmount them by hand, then rerun"
    fi
    rm -rf --one-file-system -- "$dir"
}

# Run a command inside ROOT. A private mount + pid namespace gives the command a /proc without
# touching the host mount table (the mount disappears with the namespace, nothing can leak) and
# kills every process of the command when it ends. Falls back to a plain chroot.
HAVE_UNSHARE=""
in_root() {
    if [[ -z $HAVE_UNSHARE ]]; then
        if unshare --mount --pid --fork --kill-child --mount-proc="$ROOT/proc" \
            chroot "$ROOT" /bin/true >/dev/null 2>&1; then
            HAVE_UNSHARE=1
        else
            HAVE_UNSHARE=0
            warn "unshare --mount --pid failed; running plain chroot without /proc"
        fi
    fi
    local envs=(env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
                LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1)
    if [[ $HAVE_UNSHARE == 1 ]]; then
        "${envs[@]}" unshare --mount --pid --fork --kill-child --mount-proc="$ROOT/proc" \
            chroot "$ROOT" "$@"
    else
        "${envs[@]}" chroot "$ROOT" "$@"
    fi
}

# ---------------------------------------------------------------------------------------------
# 0. fast path
# ---------------------------------------------------------------------------------------------
verify() {
    log "verifying: import tvm inside $ROOT (TVM_USE_RUNTIME_LIB=1)"
    in_root /usr/bin/env TVM_USE_RUNTIME_LIB=1 "$VENV_IN_ROOT/bin/python3" -c '
import platform, time
t = time.time()
import numpy, tvm, tvm_ffi
print("machine=%s python=%s tvm=%s tvm_ffi=%s numpy=%s import=%.1fs cpu=%s" % (
    platform.machine(), platform.python_version(), tvm.__version__, tvm_ffi.__version__,
    numpy.__version__, time.time() - t, tvm.cpu().exist))
assert platform.machine() == "aarch64", platform.machine()
'
}

ensure_qemu_binary() {
    # With binfmt's "F" (fix-binary) flag the kernel keeps its own handle of the interpreter;
    # without it the path from the registration must exist inside the chroot. Copy it anyway.
    local qemu
    qemu="$(command -v qemu-aarch64-static || true)"
    [[ -n $qemu ]] || die "qemu-aarch64-static not found"
    if [[ $(uname -m) == x86_64 ]] && ! cmp -s "$qemu" "$ROOT/usr/bin/qemu-aarch64-static"; then
        install -D -m 0755 "$qemu" "$ROOT/usr/bin/qemu-aarch64-static"
    fi
}

ensure_binfmt() {
    [[ $(uname -m) == x86_64 ]] || return 0
    if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
            warn "could not mount binfmt_misc"
    fi
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    if [[ -e $entry ]] && ! grep -qs '^enabled' "$entry"; then
        log "re-enabling the disabled qemu-aarch64 binfmt entry"
        echo 1 >"$entry" || warn "could not enable $entry"
    elif [[ ! -e $entry ]]; then
        log "registering qemu-aarch64 with binfmt_misc"
        update-binfmts --enable qemu-aarch64 || warn "update-binfmts --enable qemu-aarch64 failed"
    fi
    if grep -qs '^enabled' "$entry"; then
        log "binfmt qemu-aarch64: $(grep -E '^(interpreter|flags)' "$entry" | tr '\n' ' ')"
        return 0
    fi
    return 1
}

want="$(printf '%s\n' "${PACKAGES[@]}" | sort | tr '\n' ' ')"
if [[ -f $ROOT/$MARKER_NAME ]] && ! grep -qxF "packages=$want" "$ROOT/$MARKER_NAME"; then
    log "package list changed since the last setup; redoing the python stage"
    rm -f "$ROOT/$MARKER_NAME" "$ROOT/$STAGE_PYTHON"
fi
if [[ -f $ROOT/$MARKER_NAME && ${TVM_BSP_FORCE:-0} != 1 ]]; then
    log "marker $ROOT/$MARKER_NAME found; checking the emulator"
    ensure_binfmt || true
    ensure_qemu_binary
    if verify; then
        log "already set up: $ROOT ($((SECONDS - T0)) s)"
        exit 0
    fi
    warn "verification failed; redoing the python stage"
    rm -f "$ROOT/$MARKER_NAME" "$ROOT/$STAGE_PYTHON"
fi

# ---------------------------------------------------------------------------------------------
# 1. host packages
# ---------------------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "host packages present: ${APT_PACKAGES[*]}"
fi

# ---------------------------------------------------------------------------------------------
# 2. binfmt_misc (debootstrap's second stage runs arm64 binaries through it)
# ---------------------------------------------------------------------------------------------
if ! ensure_binfmt; then
    warn "qemu-aarch64 is not registered with binfmt_misc; chroot cannot run arm64 programs."
    warn "tests can still use 'qemu-aarch64-static -L ROOT', but this script needs binfmt."
    die "binfmt_misc unavailable (in a container, register it on the host or run privileged)"
fi

# ---------------------------------------------------------------------------------------------
# 3. debootstrap (built in ROOT.partial, renamed when complete; .debs cached)
# ---------------------------------------------------------------------------------------------
if [[ -f $ROOT/$STAGE_DEBOOTSTRAP ]]; then
    log "debootstrap stage already done"
else
    if [[ -e $ROOT ]]; then
        [[ -z $(ls -A "$ROOT") ]] ||
            die "$ROOT exists but is not a finished root of this script; move it away or delete it"
        rmdir "$ROOT"
    fi
    PARTIAL="$ROOT.partial"
    if [[ -e $PARTIAL ]]; then
        log "removing an interrupted debootstrap in $PARTIAL"
        safe_rmtree "$PARTIAL"
    fi
    mkdir -p "$PARTIAL" "$CACHE/debootstrap-debs"
    log "debootstrap --arch=arm64 --variant=minbase $SUITE (takes ~5 min under qemu)"
    cache_opt=()
    if debootstrap --help 2>&1 | grep -q -- '--cache-dir'; then
        cache_opt=(--cache-dir="$CACHE/debootstrap-debs")
    fi
    if ! debootstrap --arch=arm64 --variant=minbase "${cache_opt[@]}" \
        --include=python3,python3-venv,python3-pip "$SUITE" "$PARTIAL" "$MIRROR"; then
        unmount_under "$PARTIAL"
        [[ -f $PARTIAL/debootstrap/debootstrap.log ]] &&
            tail -n 30 "$PARTIAL/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (rerun to retry; downloads are cached)"
    fi
    unmount_under "$PARTIAL"
    [[ -z $(mounts_under "$PARTIAL") ]] || die "mounts remain under $PARTIAL"
    date -u +%FT%TZ >"$PARTIAL/$STAGE_DEBOOTSTRAP"
    mv -T "$PARTIAL" "$ROOT"
    log "debootstrap done"
fi
ensure_qemu_binary
in_root /bin/true || die "cannot run programs inside $ROOT"
root_py="$(in_root /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ $root_py == "$PY_VERSION" ]] ||
    die "python3 in the root is $root_py, wheels are for $PY_VERSION; edit PY_VERSION"
log "python3 in the root: $root_py"

# ---------------------------------------------------------------------------------------------
# 4. aarch64 wheels, downloaded on the host (no pip index needed inside the emulator)
# ---------------------------------------------------------------------------------------------
HOST_PY="${TVM_BSP_HOST_PYTHON:-}"
if [[ -z $HOST_PY ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then HOST_PY="$REPO/.venv/bin/python"; else HOST_PY=python3; fi
fi
WHEELS="$CACHE/arm64-wheels"
mkdir -p "$WHEELS"
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do # glibc of bookworm is 2.36
    platforms+=(--platform "manylinux_2_${minor}_aarch64")
done
log "pip download (aarch64, cp${PY_VERSION/./}) ${PACKAGES[*]} -> $WHEELS"
"$HOST_PY" -m pip download --quiet --disable-pip-version-check --dest "$WHEELS" \
    --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" "${PACKAGES[@]}"
for w in "$WHEELS"/*.whl; do echo "    ${w##*/}"; done

# ---------------------------------------------------------------------------------------------
# 5. venv inside the root, offline install from the wheels
# ---------------------------------------------------------------------------------------------
if [[ -f $ROOT/$STAGE_PYTHON && $(cat "$ROOT/$STAGE_PYTHON") == "$want" &&
    ${TVM_BSP_FORCE:-0} != 1 ]]; then
    log "python stage already done"
else
    mkdir -p "$ROOT$WHEELS_IN_ROOT"
    cp -u "$WHEELS"/*.whl "$ROOT$WHEELS_IN_ROOT/"
    if [[ ! -x $ROOT$VENV_IN_ROOT/bin/python3 ]]; then
        log "creating venv $VENV_IN_ROOT inside the root"
        in_root /usr/bin/python3 -m venv "$VENV_IN_ROOT"
    fi
    log "pip install (offline, under qemu; ~1-2 min)"
    in_root "$VENV_IN_ROOT/bin/python3" -m pip install --quiet --disable-pip-version-check \
        --no-index --find-links "$WHEELS_IN_ROOT" "${PACKAGES[@]}"
    rm -rf --one-file-system "${ROOT:?}$WHEELS_IN_ROOT"
    printf '%s' "$want" >"$ROOT/$STAGE_PYTHON"
fi
mkdir -p "$ROOT/tmp" && chmod 1777 "$ROOT/tmp"

# ---------------------------------------------------------------------------------------------
# 6. verify and mark
# ---------------------------------------------------------------------------------------------
verify || die "verification failed"
{
    echo "python=$VENV_IN_ROOT/bin/python3"
    echo "packages=$want"
    echo "finished=$(date -u +%FT%TZ)"
} >"$ROOT/$MARKER_NAME"
log "done: $ROOT ($((SECONDS - T0)) s). Tests find it via TVM_BSP_ARM64_ROOT or the default path."
