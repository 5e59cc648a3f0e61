#!/usr/bin/env bash
# Debian packages the GUI tests need (Xvfb and the xcb libraries Qt loads). Installs only
# what is missing, and only when we are root; otherwise says what to install.
set -euo pipefail
pkgs="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "GUI tests need these Debian packages:$missing (sudo apt-get install$missing)" >&2
fi
