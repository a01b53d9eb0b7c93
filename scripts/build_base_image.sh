#!/usr/bin/env bash
# Build a Python 3.11 base image from Debian bookworm's own packages, for machines that cannot
# pull from an image registry (the Dockerfile's default base is python:3.11-slim-bookworm).
# debootstrap fetches the packages from the Debian mirror apt already uses; the result is
# imported with `docker import`. Needs root, debootstrap (installed with apt-get when missing)
# and a Docker engine.
# Usage: scripts/build_base_image.sh [TAG]   (default marketbridge/python:3.11-bookworm)
set -euo pipefail
tag=${1:-marketbridge/python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "build_base_image: $*" >&2; }

if docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag already present"; exit 0
fi
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
root=$(mktemp -d /tmp/marketbridge-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap bookworm (minbase + python3) into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" \
  >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# What a slim image leaves out: package caches, docs, man pages, locales other than C.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
ln -sf python3 "$root/usr/bin/python"
chmod 0755 "$root"  # mktemp made it 0700: non-root users could not reach /usr
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["python3"]' - "$tag" >/dev/null
log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1000000}'))"
