#!/usr/bin/env bash
# Install numad-py: the Python package, the systemd unit and the /etc defaults.
# `make install` runs this.  Idempotent: run it again to upgrade; files under
# /etc/numad-py that already exist are never overwritten.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--python PY] [--no-python] [--numad-compat] [--dry-run]
#
# What goes where (PREFIX=/opt/numad-py by default):
#   PREFIX/                            a venv made with PY (default python3), `pip install .` into it.
#                                      A venv and not the system python: Debian 12's python3 is
#                                      "externally managed" (PEP 668), and the unit's ProtectHome=yes
#                                      hides interpreters under /root or /home (pyenv, user venvs).
#   /usr/local/bin/numad-py            symlink to PREFIX/bin/numad-py: the unit's ExecStart path.
#   /etc/systemd/system/numad-py.service  systemd/numad-py.service (replaced: it is ours, not the
#                                      user's; customise with `systemctl edit numad-py`).  If PREFIX
#                                      is not the default, ExecStart is unchanged: the symlink above
#                                      keeps /usr/local/bin/numad-py valid.
#   /etc/numad-py/numad-py.toml, rules.d/*.toml   copied only if missing (0644, dirs 0755: the
#                                      daemon's dynamic user must read them).
#   /usr/local/bin/numad              with --numad-compat only: symlink to PREFIX/bin/numad-py-numad,
#                                      numad's command line (libvirt's `numad -w`).  Refused when
#                                      another numad is on PATH: it is never replaced silently.
# Then `systemctl daemon-reload` if systemd runs (and --destdir is not set).  It does not enable or
# start the service: `systemctl enable --now numad-py`.
#
# Packaging: --destdir DIR (or DESTDIR=DIR) stages everything under DIR as if DIR were /.  The
# venv's scripts and pyvenv.cfg are rewritten to name PREFIX, not DESTDIR/PREFIX, so the staged
# tree works once copied to /.  --no-python skips the venv (the package ships the Python part
# some other way).  Extra pip arguments: PIP_INSTALL_ARGS="...".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

prefix=/opt/numad-py
destdir="${DESTDIR:-}"
python=python3
do_python=1
numad_compat=0
dry=0
bindir=/usr/local/bin
unitdir=/etc/systemd/system
confdir=/etc/numad-py

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --destdir) destdir="$2"; shift 2 ;;
        --destdir=*) destdir="${1#*=}"; shift ;;
        --python) python="$2"; shift 2 ;;
        --python=*) python="${1#*=}"; shift ;;
        --no-python) do_python=0; shift ;;
        --numad-compat) numad_compat=1; shift ;;
        --dry-run|-n) dry=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done
[[ "$prefix" = /* ]] || { echo "install.sh: --prefix must be absolute, got $prefix" >&2; exit 2; }
destdir="${destdir%/}"
if [[ -n "$destdir" ]]; then
    mkdir -p "$destdir"
    destdir="$(cd "$destdir" && pwd)"
fi

say() { echo "install: $*"; }
run() { if [[ $dry -eq 1 ]]; then echo "install: would run: $*"; else "$@"; fi; }

# Install $1 as $2 (mode $3) if different; "replace" or "keep" if $2 exists.
put() {
    local src="$1" dst="$2" mode="$3" policy="$4"
    if [[ -e "$dst" ]]; then
        if cmp -s "$src" "$dst"; then
            say "unchanged  $dst"
            return
        fi
        if [[ $policy = keep ]]; then
            say "kept       $dst (exists and differs; the shipped version is $src)"
            return
        fi
        say "updated    $dst"
    else
        say "installed  $dst"
    fi
    run install -D -m "$mode" "$src" "$dst"
}

# --- the Python package ------------------------------------------------------
if [[ $do_python -eq 1 ]]; then
    venv="$destdir$prefix"
    if [[ ! -x "$venv/bin/python" ]]; then
        say "creating venv $venv ($("$python" --version 2>&1))"
        run "$python" -m venv "$venv"
    else
        say "using venv   $venv"
    fi
    say "pip install $repo into $venv"
    # shellcheck disable=SC2086
    run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        ${PIP_INSTALL_ARGS:-} "$repo"
    if [[ -n "$destdir" && $dry -eq 0 ]]; then
        # Staged install: point the scripts' shebangs and pyvenv.cfg at PREFIX.
        grep -rlI --null -F "$venv" "$venv/bin" "$venv/pyvenv.cfg" 2>/dev/null \
            | xargs -0 -r sed -i "s|$venv|$prefix|g"
        say "rewrote     $venv/bin/* and pyvenv.cfg: $venv -> $prefix"
    fi
    link="$destdir$bindir/numad-py"
    if [[ "$(readlink "$link" 2>/dev/null)" = "$prefix/bin/numad-py" ]]; then
        say "unchanged  $link -> $prefix/bin/numad-py"
    elif [[ -e "$link" && ! -L "$link" ]]; then
        say "kept       $link (a file, not our symlink: remove it to use $prefix/bin/numad-py)"
    else
        run mkdir -p "$destdir$bindir"
        run ln -sfn "$prefix/bin/numad-py" "$link"
        say "linked     $link -> $prefix/bin/numad-py"
    fi
else
    say "skipped the Python package (--no-python)"
fi

# --- numad's command line, on request -----------------------------------------
if [[ $numad_compat -eq 1 ]]; then
    link="$destdir$bindir/numad"
    real="$(command -v numad 2>/dev/null || true)"
    if [[ -n "$real" && "$(readlink -f "$real")" != "$(readlink -f "$destdir$prefix/bin/numad-py-numad" 2>/dev/null)" ]]; then
        echo "install: refusing --numad-compat: $real is another numad (remove it, or keep it and skip this)" >&2
        exit 1
    fi
    run mkdir -p "$destdir$bindir"
    run ln -sfn "$prefix/bin/numad-py-numad" "$link"
    say "linked     $link -> $prefix/bin/numad-py-numad (numad's command line)"
fi

# --- the unit ----------------------------------------------------------------
put "$repo/systemd/numad-py.service" "$destdir$unitdir/numad-py.service" 0644 replace

# --- /etc/numad-py: never overwrite what the user has --------------------------
run install -d -m 0755 "$destdir$confdir" "$destdir$confdir/rules.d"
put "$repo/etc/numad-py/numad-py.toml" "$destdir$confdir/numad-py.toml" 0644 keep
for f in "$repo"/etc/numad-py/rules.d/*.toml; do
    put "$f" "$destdir$confdir/rules.d/$(basename "$f")" 0644 keep
done

# --- systemd -------------------------------------------------------------------
if [[ -n "$destdir" ]]; then
    say "not reloading systemd (staged under $destdir)"
elif [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    run systemctl daemon-reload
    say "systemctl daemon-reload done; start with: systemctl enable --now numad-py"
else
    say "systemd is not running here: no daemon-reload"
fi
say "done"
