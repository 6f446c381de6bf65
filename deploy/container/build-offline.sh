#!/usr/bin/env bash
# Build the numad-py image where no container registry is reachable: the base image is made
# from a debootstrap root (Debian 12 minbase) instead of pulled, then the same Containerfile
# runs on it.  Needs root, buildah and debootstrap (apt-get install buildah debootstrap).
#
#   deploy/container/build-offline.sh [TAG]        default TAG: numad-py:<version>
#
# BASE_TAR=path/to/root.tar reuses an existing root tarball instead of running debootstrap.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/numad_py/__init__.py")"
tag="${1:-numad-py:$version}"
base=localhost/debian-bookworm-minbase:latest
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"   # works without overlayfs or fuse
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
    tar="${BASE_TAR:-}"
    if [[ -z "$tar" ]]; then
        root="$(mktemp -d)"; trap 'rm -rf --one-file-system "$root"' EXIT
        debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
        tar="$root.tar"; tar -C "$root" -cf "$tar" .
    fi
    ctr="$(buildah from scratch)"
    mnt="$(buildah mount "$ctr")"
    tar -C "$mnt" -xf "$tar"
    # The build runs apt and pip inside the image: give the base this machine's way to reach
    # the registries (resolver, apt sources, CA bundle, pip settings), as for any local build.
    cp /etc/resolv.conf "$mnt/etc/resolv.conf"
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        cp /etc/apt/sources.list.d/*.sources "$mnt/etc/apt/sources.list.d/"; rm -f "$mnt/etc/apt/sources.list"
    fi
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        mkdir -p "$mnt/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
    fi
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then  # kept when apt rebuilds the bundle
        mkdir -p "$mnt/usr/local/share/ca-certificates"; cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
    fi
    [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$mnt/etc/pip.conf"
    buildah umount "$ctr" >/dev/null
    buildah commit --rm "$ctr" "$base" >&2
fi
buildah bud --layers=false --build-arg "BASE=$base" -f "$repo/deploy/container/Containerfile" -t "$tag" "$repo" >&2
buildah run "$(buildah from "$tag")" -- numad-py --help >/dev/null && echo "built $tag; numad-py runs in it"
