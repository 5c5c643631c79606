#!/usr/bin/env bash
# System libraries the Python wheels expect on a fresh Debian/Ubuntu machine:
# PortAudio for playback (sounddevice), libsndfile for files (soundfile's wheel bundles its own,
# the system one is a fallback), and the X/EGL/font libraries Qt loads even on its offscreen platform.
set -euo pipefail
packages=(python3-venv python3-pip libportaudio2 libsndfile1 libasound2-plugins
          libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0)
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
