#!/bin/bash
# Runs INSIDE the guest as systemd's kernel-command-line.service (kernel option
# systemd.run=, see run_systemd_vm.py).  systemd is PID 1; virtme-ng-init never
# runs in this boot, so this script does the mounts it would have done:
#   * throw-away overlays on /tmp, /etc and /var (the guest root is the host's /
#     exported read-only; an overlay, not a tmpfs, on /tmp keeps a checkout
#     under /tmp visible, as CI's clone may be),
#   * the --rwdir shares (virtme_initmountN=... on the kernel command line),
# then hands over to guest_systemd.py.  systemd powers the guest off when this
# service ends (systemd.run_{success,failure}_action=poweroff-force).
set -u
karg() { tr ' ' '\n' </proc/cmdline | tr -d '"' | sed -n "s|^$1=||p" | tail -n 1; }

out="$(karg numad_e2e.out)"
python="$(karg numad_e2e.python)"
# $SYSTEMD_PROC_CMDLINE (systemd.setenv=, for the generators) reaches every
# service's environment too: keep it away from systemctl & co. started below.
unset SYSTEMD_PROC_CMDLINE
say() { echo "guest_boot: $*" >/dev/console; }

# Writable scratch first: throw-away overlays on /tmp, /etc and /var.  The
# rwdir is mounted AFTER them, or a rwdir under /tmp (pytest's tmp_path) would
# be hidden by the overlay.
mkdir -p /run/numad-e2e-ov
mount -t tmpfs tmpfs /run/numad-e2e-ov
for d in tmp etc var; do
    mkdir -p "/run/numad-e2e-ov/$d.upper" "/run/numad-e2e-ov/$d.work"
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=/run/numad-e2e-ov/$d.upper,workdir=/run/numad-e2e-ov/$d.work" "/$d" \
        || { say "overlay on /$d failed"; exit 1; }
done
for i in 0 1 2 3 4 5 6 7; do
    path="$(karg "virtme_initmount$i")"
    [ -n "$path" ] || break
    fstype="$(karg "virtme_initmount${i}_fstype")"
    access="$(karg "virtme_initmount${i}_access")"
    mkdir -p "/$path"
    if [ "$fstype" = virtiofs ]; then
        mount -t virtiofs -o "${access:-rw}" "virtme.initmount$i" "/$path"
    else
        mount -t 9p -o "${access:-rw},trans=virtio,version=9p2000.L,access=any,msize=524288" \
            "virtme.initmount$i" "/$path"
    fi || say "mounting virtme.initmount$i on /$path failed"
done
log="$out/guest.log"
if ! touch "$log"; then
    say "cannot write to $out (rwdir not mounted?)"
    exit 1
fi
exec >>"$log" 2>&1
echo "guest_boot: $(uname -r), PID 1 is $(cat /proc/1/comm), nodes $(cat /sys/devices/system/node/online)"
echo "guest_boot: mounts done; /tmp, /etc, /var overlays, rwdir $out"
exec "$python" "$(dirname "$(readlink -f "$0")")/guest_systemd.py" "$out"
