#!/usr/bin/env bash
# Install what the multi-node VM harness needs, only what is missing.
# Idempotent and quiet when everything is present (a Debian 12 machine, root).
#
#   tests/vm/setup.sh                     packages + virtme-ng + every kernel (6.1, 6.12)
#   tests/vm/setup.sh --kernel 6.12       ... only that kernel (repeatable)
#   tests/vm/setup.sh --packages          Debian packages only (what `pip install -e .` needs too)
#   tests/vm/setup.sh --print-env [--kernel K]...
#        everything, then on stdout: NUMAD_VM_CACHE=, NUMAD_VM_VNG=, one
#        NUMAD_VM_KERNEL_<name>= per kernel (6.1 -> NUMAD_VM_KERNEL_6_1) and
#        NUMAD_VM_KERNEL= (the default kernel, 6.1, when it was asked for)
#
# Kernels are Debian's, fetched with `apt-get download` and unpacked with
# `dpkg -x` into the cache (never installed with dpkg -i):
#   6.1   linux-image-amd64's dependency (bookworm)
#   6.12  linux-image-6.12-amd64's dependency (bookworm-security); its .ko.xz
#         modules are decompressed and depmod re-run, since virtme-ng 1.42
#         loads only plain or .zst modules.
# Cache: $NUMAD_VM_CACHE, else /var/cache/numad-py-vm if writable, else tests/vm/.cache.
# One directory per kernel release, kernels/<uname -r>/root, that appears by
# an atomic rename only once complete: concurrent runs never see half a kernel.
set -euo pipefail

VNG_VERSION=1.42
# python3-dev: the cffi module's headers; busybox-static, file: virtme-ng's guest init;
# prometheus: promtool and the real-scrape test; systemd: systemd-analyze for the unit tests;
# xz-utils: decompresses the 6.12 kernel's modules (a minbase root may lack it);
# systemd-sysv: /sbin/init for the systemd end-to-end guest; procps: /bin/kill, the unit's ExecReload;
# iproute2: `ip`, with which virtme's guest init brings the loopback interface up.
PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev libnuma-dev numactl
          qemu-system-x86 kmod busybox-static file prometheus systemd xz-utils
          systemd-sysv procps iproute2)

# name -> the Debian (meta-)package whose linux-image-<version> dependency is that kernel.
declare -A KERNEL_META=([6.1]=linux-image-amd64 [6.12]=linux-image-6.12-amd64)
KERNEL_NAMES=(6.1 6.12)
DEFAULT_KERNEL=6.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

say() { echo "vm-setup: $*" >&2; }
die() { say "$*"; exit 1; }

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
    find_vng "$cache" >/dev/null || die "virtme-ng did not install"
}

# The newest complete cached kernel of this name ("6.1" matches 6.1.*, not 6.12.*).
find_kernel() {
    local cache="$1" name="$2" dir rel
    for dir in $(ls -1d "$cache/kernels/$name".* 2>/dev/null | sort -V -r); do
        rel="${dir##*/}"
        if [[ -f "$dir/root/boot/vmlinuz-$rel" && -f "$dir/root/lib/modules/$rel/modules.dep" ]]; then
            echo "$dir/root/boot/vmlinuz-$rel"; return
        fi
    done
    return 1
}

resolve_package() {
    local meta="$1" pkg
    pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [[ -z "$pkg" ]]; then
        apt_update
        pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    fi
    [[ -n "$pkg" ]] || die "cannot resolve $meta to a kernel package (is its apt source configured?)"
    echo "$pkg"
}

# virtme-ng 1.42 loads plain or .zst modules only: decompress .ko.xz, rebuild modules.dep.
plain_modules() {
    local root="$1" rel="$2" count
    count="$(find "$root/lib/modules/$rel" -name '*.ko.xz' | wc -l)"
    [[ "$count" -gt 0 ]] || return 0
    command -v xz >/dev/null || die "xz is missing (package xz-utils) and $rel has compressed modules"
    say "decompressing $count modules of $rel"
    find "$root/lib/modules/$rel" -name '*.ko.xz' -print0 | xargs -0 -r -n 256 xz -d
    depmod -b "$root" "$rel"
}

install_kernel() {
    local cache="$1" name="$2"
    if find_kernel "$cache" "$name" >/dev/null; then return; fi
    local meta="${KERNEL_META[$name]}" pkg tmp rel
    pkg="$(resolve_package "$meta")"
    say "fetching $pkg for kernel $name (apt-get download + dpkg -x into $cache/kernels)"
    mkdir -p "$cache/kernels"
    tmp="$(mktemp -d "$cache/kernels/.tmp.XXXXXX")"
    trap "rm -rf '$tmp'" EXIT
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2)
    dpkg -x "$tmp"/*.deb "$tmp/root"
    rm -f "$tmp"/*.deb
    # Merged-/usr packages put modules in usr/lib/modules; vng and depmod look in lib/modules.
    if [[ ! -d "$tmp/root/lib/modules" && -d "$tmp/root/usr/lib/modules" ]]; then
        ln -s usr/lib "$tmp/root/lib"
    fi
    rel="$(ls -1 "$tmp/root/boot" | sed -n 's/^vmlinuz-//p' | head -n1)"
    [[ -n "$rel" && -d "$tmp/root/lib/modules/$rel" ]] || die "no vmlinuz with modules in $pkg"
    [[ "$rel" == "$name".* ]] || die "$pkg holds kernel $rel, not $name.*"
    plain_modules "$tmp/root" "$rel"
    [[ -f "$tmp/root/lib/modules/$rel/modules.dep" ]] || depmod -b "$tmp/root" "$rel"
    chmod 755 "$tmp"
    # Atomic publish; if another run won the race, keep theirs.
    if ! mv -T "$tmp" "$cache/kernels/$rel" 2>/dev/null; then
        rm -rf "$tmp"
    fi
    trap - EXIT
    find_kernel "$cache" "$name" >/dev/null || die "kernel $name did not install into $cache/kernels"
}

env_name() { echo "NUMAD_VM_KERNEL_${1//./_}"; }

# --- arguments ---------------------------------------------------------------

mode=all
kernels=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --packages|--print-env|--all|all) mode="${1#--}" ;;
        --kernel)
            [[ $# -ge 2 ]] || die "--kernel needs a name: ${KERNEL_NAMES[*]}"
            [[ -n "${KERNEL_META[$2]:-}" ]] || die "unknown kernel '$2' (known: ${KERNEL_NAMES[*]})"
            kernels+=("$2"); shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) say "unknown option $1"; exit 2 ;;
    esac
    shift
done
[[ ${#kernels[@]} -gt 0 ]] || kernels=("${KERNEL_NAMES[@]}")

case "$mode" in
    packages)
        install_packages
        ;;
    all|print-env)
        install_packages
        cache="$(cache_dir)"
        # One installer at a time per cache (several checkouts may share it);
        # kernels are also published by atomic rename, so readers never wait.
        exec 9>>"$cache/.install.lock"
        flock 9
        install_vng "$cache"
        for k in "${kernels[@]}"; do install_kernel "$cache" "$k"; done
        flock -u 9
        if [[ "$mode" == print-env ]]; then
            echo "NUMAD_VM_CACHE=$cache"
            echo "NUMAD_VM_VNG=$(find_vng "$cache")"
            for k in "${kernels[@]}"; do
                path="$(find_kernel "$cache" "$k")"
                echo "$(env_name "$k")=$path"
                [[ "$k" != "$DEFAULT_KERNEL" ]] || echo "NUMAD_VM_KERNEL=$path"
            done
        fi
        ;;
esac
