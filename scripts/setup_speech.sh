#!/usr/bin/env bash
# Install the Debian packages the speech side (tvm_bsp.speech) needs. Idempotent: packages
# already installed are left alone, and apt-get runs only when something is missing.
#
#   espeak-ng, libespeak-ng1   eSpeak NG synthesiser (loaded through ctypes) and its voices
#   flite                      second synthesiser (kal16, awb, rms, slt voices)
#   wamerican                  /usr/share/dict/american-english, the word list
#   pocketsphinx-testdata      12 real recordings with transcripts (tvm_bsp.speech.real)
#   pocketsphinx-en-us         CMUdict, reference phones of those recordings
set -euo pipefail

packages=(espeak-ng libespeak-ng1 flite wamerican pocketsphinx-testdata pocketsphinx-en-us)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup_speech: all packages present (${packages[*]})"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "setup_speech: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "setup_speech: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
