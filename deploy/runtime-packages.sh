#!/bin/sh
# deploy/runtime-packages.sh BINARY... — the Debian/Ubuntu packages that provide the shared libraries the given
# binaries load (ldd, then dpkg -S), one per line. The build stage of the Dockerfiles writes this list and the
# runtime stage installs exactly it, so the runtime packages always match what was linked (no hand-kept list of
# versioned names such as libavcodec59 / libavcodec60 / libflac12t64 across distributions).
set -eu
for bin in "$@"; do
  ldd "$bin" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  real=$(readlink -f "$lib")
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true
done | cut -d: -f1 | sort -u | grep -v -E '^(libc6|libgcc-s1|libstdc\+\+6)$' || true
