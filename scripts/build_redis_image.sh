#!/usr/bin/env bash
# Build a tiny Redis image from this machine's Debian redis-server, for machines that cannot
# pull from an image registry. The image holds redis-server, redis-sentinel, redis-cli, /bin/sh
# and the shared libraries they link; it runs `redis-server --protected-mode no` by default.
# Usage: scripts/build_redis_image.sh [TAG]   (default marketbridge/redis:local)
set -euo pipefail
tag=${1:-marketbridge/redis:local}
for bin in redis-server redis-cli sh; do
  command -v "$bin" >/dev/null || { echo "build_redis_image: $bin not found (apt-get install redis-server)" >&2; exit 1; }
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,etc,tmp,data,lib64}
chmod 1777 "$root/tmp" "$root/data"
real=$(readlink -f "$(command -v redis-server)")
cp "$real" "$root/usr/bin/redis-server"
ln -s redis-server "$root/usr/bin/redis-sentinel"
cp "$(readlink -f "$(command -v redis-cli)")" "$root/usr/bin/redis-cli"
cp "$(readlink -f /bin/sh)" "$root/bin/sh"
for bin in "$real" "$(command -v redis-cli)" /bin/sh; do
  ldd "$bin" | grep -oE '/[^ ]+' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'redis:x:999:999::/data:/bin/sh' >> "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  -c 'CMD ["redis-server", "--protected-mode", "no"]' \
  -c 'WORKDIR /data' -c 'EXPOSE 6379' - "$tag" >/dev/null
echo "built $tag from $real"
