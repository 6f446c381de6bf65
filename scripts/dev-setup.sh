#!/usr/bin/env bash
# What `make run` needs besides the venv, so that the README's commands work as written in a
# second terminal: `numad-py` on PATH, and the shipped policy where every command looks for it.
#
#   /usr/local/bin/numad-py  -> .venv/bin/numad-py   (left alone if it is a file, or a link to
#                                                     an installed /opt/numad-py: say which)
#   /etc/numad-py/           <- etc/numad-py/        (only files that are missing: never
#                                                     overwrites an admin's policy)
# As an ordinary user nothing outside the checkout is touched; it prints what to do instead.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cli="$repo/.venv/bin/numad-py"
say() { echo "make run: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    say "not root: nothing installed outside the checkout; use \"$cli\" and --config \"$repo/etc/numad-py/numad-py.toml\""
    exit 0
fi

link=/usr/local/bin/numad-py
current="$(readlink "$link" 2>/dev/null || true)"
if [[ -e "$link" && ! -L "$link" ]]; then
    say "kept $link (a file, not a link); this checkout's command is $cli"
elif [[ -n "$current" && "$current" != "$cli" && -x "$current" && "$current" != "$repo"* ]]; then
    say "kept $link -> $current (an installed numad-py); this checkout's command is $cli"
else
    mkdir -p /usr/local/bin
    ln -sfn "$cli" "$link"
fi

install -d -m 0755 /etc/numad-py /etc/numad-py/rules.d
for src in "$repo"/etc/numad-py/numad-py.toml "$repo"/etc/numad-py/rules.d/*.toml; do
    dst="/etc/numad-py/${src#"$repo"/etc/numad-py/}"
    [[ -e "$dst" ]] || { install -m 0644 "$src" "$dst"; say "installed $dst"; }
done
