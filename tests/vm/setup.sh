#!/usr/bin/env bash
# Install what the multi-node VM harness needs, only what is missing.
# Idempotent and quiet when everything is present (a Debian 12 machine, root).
#
#   tests/vm/setup.sh              packages + virtme-ng + kernel
#   tests/vm/setup.sh --packages   Debian packages only (what `pip install -e .` needs too)
#   tests/vm/setup.sh --print-env  everything, then print NUMAD_VM_KERNEL=/NUMAD_VM_VNG= on stdout
#
# The kernel is Debian's linux-image-*-amd64, fetched with `apt-get download`
# and unpacked with `dpkg -x` into the cache (never installed with dpkg -i).
# Cache: $NUMAD_VM_CACHE, else /var/cache/numad-py-vm if writable, else tests/vm/.cache.
set -euo pipefail

VNG_VERSION=1.42
# python3-dev: the cffi module's headers; busybox-static, file: virtme-ng's guest init;
# prometheus: promtool and the real-scrape test; systemd: systemd-analyze for the unit tests.
PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev libnuma-dev numactl
          qemu-system-x86 kmod busybox-static file prometheus systemd)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mode="${1:-all}"

say() { echo "vm-setup: $*" >&2; }

cache_dir() {
    if [[ -n "${NUMAD_VM_CACHE:-}" ]]; then
        mkdir -p "$NUMAD_VM_CACHE" && echo "$NUMAD_VM_CACHE"
    elif mkdir -p /var/cache/numad-py-vm 2>/dev/null && [[ -w /var/cache/numad-py-vm ]]; then
        echo /var/cache/numad-py-vm
    else
        mkdir -p "$repo/tests/vm/.cache" && echo "$repo/tests/vm/.cache"
    fi
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

apt_updated=0
apt_update() {
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        as_root apt-get update -qq >&2
        apt_updated=1
    fi
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_update
        say "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}

vng_ok() {
    local v
    v="$("$1" --version 2>/dev/null || true)"
    [[ "$v" == *"$VNG_VERSION"* ]]
}

find_vng() {
    local cache="$1"
    if [[ -n "${NUMAD_VM_VNG:-}" ]] && vng_ok "$NUMAD_VM_VNG"; then echo "$NUMAD_VM_VNG"; return; fi
    if command -v vng >/dev/null && vng_ok "$(command -v vng)"; then command -v vng; return; fi
    if [[ -x "$cache/vng-venv/bin/vng" ]] && vng_ok "$cache/vng-venv/bin/vng"; then
        echo "$cache/vng-venv/bin/vng"; return
    fi
    return 1
}

install_vng() {
    local cache="$1"
    if find_vng "$cache" >/dev/null; then return; fi
    # A venv of its own: works whether python3 is Debian's (externally managed) or not.
    say "installing virtme-ng==$VNG_VERSION into $cache/vng-venv"
    rm -rf "$cache/vng-venv"
    python3 -m venv "$cache/vng-venv" >&2
    "$cache/vng-venv/bin/pip" install -q --disable-pip-version-check "virtme-ng==$VNG_VERSION" >&2
    find_vng "$cache" >/dev/null || { say "virtme-ng did not install"; exit 1; }
}

find_kernel() {
    local cache="$1" k
    for k in $(ls -1 "$cache"/kernel/root/boot/vmlinuz-* 2>/dev/null | sort -V -r); do
        local ver="${k##*/vmlinuz-}"
        if [[ -d "$cache/kernel/root/lib/modules/$ver" ]]; then echo "$k"; return; fi
    done
    return 1
}

install_kernel() {
    local cache="$1"
    if find_kernel "$cache" >/dev/null; then return; fi
    local pkg
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [[ -z "$pkg" ]]; then
        apt_update
        pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    fi
    [[ -n "$pkg" ]] || { say "cannot resolve linux-image-amd64 to a kernel package"; exit 1; }
    say "fetching $pkg (apt-get download + dpkg -x into $cache/kernel)"
    local tmp
    tmp="$(mktemp -d "$cache/kernel.tmp.XXXXXX")"
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2)
    dpkg -x "$tmp"/*.deb "$tmp/root"
    rm -f "$tmp"/*.deb
    # Another run may have won the race: keep theirs.
    if find_kernel "$cache" >/dev/null; then rm -rf "$tmp"; return; fi
    rm -rf "$cache/kernel"
    mv "$tmp" "$cache/kernel"
    find_kernel "$cache" >/dev/null || { say "no vmlinuz with modules in $pkg"; exit 1; }
}

case "$mode" in
    --packages)
        install_packages
        ;;
    all|--all|--print-env)
        install_packages
        cache="$(cache_dir)"
        install_vng "$cache"
        install_kernel "$cache"
        if [[ "$mode" == --print-env ]]; then
            echo "NUMAD_VM_CACHE=$cache"
            echo "NUMAD_VM_VNG=$(find_vng "$cache")"
            echo "NUMAD_VM_KERNEL=$(find_kernel "$cache")"
        fi
        ;;
    -h|--help)
        sed -n '2,12p' "$0"
        ;;
    *)
        say "unknown option $mode"; exit 2
        ;;
esac
