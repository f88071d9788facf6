"""The files pvbuild puts into the Xen test host's dom0 and into the guest overlay, as constants.

They are text, not input: nothing here is built from a user's image or recipe, and every one of them is part of
the host's cache key (changing a byte here makes `prepare` build a new host).

The protocol between pvbuild (outside, in QEMU's monitor and serial log) and dom0 (inside):

* pvbuild hot-plugs the guest disk as a virtio-scsi disk whose serial is `pvb-<variant>-<id>-<timeout>`;
* the runner in dom0 sees it under /dev/disk/by-id, mounts each of its filesystems (the writes go to the
  qcow2 overlay pvbuild made for this boot, never to the image), prints the menu.lst titles it finds, drops the
  probe into every filesystem that looks like a root filesystem, unmounts, and `xl create`s a PV domU whose kernel
  is the GRUB 2 loader of the variant and whose xvda is that disk;
* every line of the guest console is copied to dom0's console (-> Xen -> QEMU's serial log) as
  `[pvb <id> <seconds since xl create>] <line>`; the runner ends with `PVBOOT RESULT <id> <why> <seconds>`.

Every decision about the boot (which milestone, which failure) is made by pvbuild from that transcript
(`pvbuild.boot.console`); the runner only decides when to stop watching.
"""

from __future__ import annotations

# GRUB 2 modules of the loader images: file systems and partition maps the GRUB 2 legacy loader may meet, the
# legacy_configfile parser, the Xen loader (`linux`), decompressors for kernels and initrds.
LOADER_MODULES = (
    "memdisk", "tar", "normal", "configfile", "legacycfg", "linux", "ext2", "fat", "iso9660", "xfs", "btrfs",
    "reiserfs", "jfs", "part_msdos", "part_gpt", "search", "search_fs_file", "search_fs_uuid", "search_label",
    "echo", "test", "ls", "cat", "halt", "reboot", "sleep", "gzio", "xzio", "lzopio", "zstd", "minicmd", "true",
    "regexp",
)

_LOADER_FAIL = 'echo "PVBUILD-LOADER-FAIL {why}"; sleep 2; halt'

# The memdisk grub.cfg of each loader: like the PV-GRUB AKIs, look for menu.lst on (hd0) (hd0 variant) or on the
# first partition, /boot/grub/menu.lst then /grub/menu.lst (hd00 variant, GRUB 0.97's (hd0,0)), and run it with
# GRUB 2's GRUB-legacy interpreter. The PVBUILD-LOADER lines are milestones for the console parser.
LOADER_CONFIGS = {
    "hd0": "\n".join([
        'echo "PVBUILD-LOADER hd0"',
        "set root=hd0",
        "if test -f /boot/grub/menu.lst; then",
        '  echo "PVBUILD-LOADER menu (hd0)/boot/grub/menu.lst"',
        "  legacy_configfile /boot/grub/menu.lst",
        "  " + _LOADER_FAIL.format(why="menu.lst (hd0)/boot/grub/menu.lst booted no kernel"),
        "fi",
        _LOADER_FAIL.format(why="menu.lst not found: no /boot/grub/menu.lst on (hd0)"),
        "",
    ]),
    "hd00": "\n".join([
        'echo "PVBUILD-LOADER hd00"',
        "set root=hd0,1",
        "for f in /boot/grub/menu.lst /grub/menu.lst; do",
        "  if test -f $f; then",
        '    echo "PVBUILD-LOADER menu (hd0,0)$f"',
        "    legacy_configfile $f",
        "    " + _LOADER_FAIL.format(why="menu.lst (hd0,0)$f booted no kernel"),
        "  fi",
        "done",
        _LOADER_FAIL.format(why="menu.lst not found: no /boot/grub/menu.lst or /grub/menu.lst on (hd0,0)"),
        "",
    ]),
}
LOADER_BOOTSTRAP = "normal (memdisk)/grub.cfg\n"

# The first-boot probe: a oneshot systemd unit pulled in by sysinit.target with no ordering at all, so the guest's
# own systemd runs it among its very first jobs on the real root (under TCG the rest of the boot takes minutes and
# proves nothing more about the PV side), printing on the Xen console what the guest saw. It only reads (the root
# may still be read-only), and it is written into the overlay only.
PROBE_SCRIPT = """#!/bin/sh
# pvbuild boot probe: injected by `pvbuild boot` into a copy-on-write overlay; never part of the image.
out=/dev/hvc0
[ -c "$out" ] || out=/dev/console
root=$(findmnt -n -o SOURCE / 2>/dev/null)
if [ -z "$root" ]; then
  while read -r dev mp rest; do [ "$mp" = / ] && root=$dev; done < /proc/mounts
fi
{
  echo "PVBUILD-PROBE kernel=$(uname -r)"
  echo "PVBUILD-PROBE cmdline=$(cat /proc/cmdline)"
  echo "PVBUILD-PROBE root=$root"
  echo "PVBUILD-PROBE init=$(readlink /proc/1/exe)"
  echo "PVBUILD-PROBE-END"
} > "$out" 2>&1
"""
PROBE_PATH = "/etc/pvbuild-boot-probe"
PROBE_UNIT_NAME = "pvbuild-boot-probe.service"
PROBE_UNIT = f"""[Unit]
Description=pvbuild boot probe (injected by pvbuild boot into a copy-on-write overlay)
DefaultDependencies=no

[Service]
Type=oneshot
ExecStart=/bin/sh {PROBE_PATH}

[Install]
WantedBy=sysinit.target
"""

# Lines of the guest console after which watching longer tells nothing new (the runner stops a few seconds
# later, so the lines that explain it reach the log). pvbuild's console parser says what they mean.
STOP_PATTERNS = (
    "PVBUILD-LOADER-FAIL", "Failed to boot both default and fallback entries", "grub> ", "Kernel panic",
    "ALERT! ", "Gave up waiting for root", "(initramfs) ", "You are in emergency mode", "No working init found",
    "job control turned off",
)
# initramfs-tools waits up to 180 s for the root device. When it waits and no Xen disk (xvd*) ever appeared, the
# initrd cannot see the disk (no xen-blkfront): the runner stops after this many seconds instead.
ROOT_STALL_SECONDS = 45

RUNNER_PATH = "/usr/local/sbin/pvbuild-boot-runner"
RUNNER = r"""#!/bin/bash
# pvbuild boot runner (dom0 side of `pvbuild boot`): boots every hot-plugged pvb-* disk as a PV domU.
set -u
exec > /dev/console 2>&1
export LC_ALL=C
STOP_RE='@STOP_RE@'
STALL=@STALL@
mkdir -p /run/pvbuild/mnt
secs() { local d=$(( ${EPOCHREALTIME/./} - $1 )); printf '%d.%02d' $((d / 1000000)) $(((d % 1000000) / 10000)); }

menu_titles() {  # $1=id $2=device $3=mount point: the titles of the menu.lst files the loaders look at
  local f n
  for f in boot/grub/menu.lst grub/menu.lst; do
    [ -f "$3/$f" ] || continue
    n=0
    while IFS= read -r line; do
      line=${line%$'\r'}
      if [[ $line =~ ^[[:space:]]*title([[:space:]=]+(.*))?$ ]]; then
        echo "PVBOOT TITLE $1 $2 /$f $n ${BASH_REMATCH[2]}"
        n=$((n + 1))
      fi
    done < <(head -c 65536 "$3/$f")
  done
}

probe_fs() {  # $1=id $2=device $3=fstype: mount it, print its menus, drop the probe in when it looks like a root
  local id=$1 dev=$2 fstype=$3 mnt=/run/pvbuild/mnt init
  if ! mount -t "$fstype" "$dev" "$mnt" 2>/run/pvbuild/mount.err; then
    echo "PVBOOT FS $id $dev $fstype unmountable: $(head -c 200 /run/pvbuild/mount.err | tr '\n' ' ')"
    return
  fi
  menu_titles "$id" "$dev" "$mnt"
  init=none
  for f in sbin/init usr/sbin/init usr/lib/systemd/systemd lib/systemd/systemd; do
    if [ -e "$mnt/$f" ] || [ -L "$mnt/$f" ]; then init=/$f; break; fi
  done
  if [ -d "$mnt/etc" ] && [ "$init" != none ]; then
    mkdir -p "$mnt/etc/systemd/system/sysinit.target.wants"
    base64 -d > "$mnt@PROBE_PATH@" <<'EOF'
@PROBE_B64@
EOF
    chmod 0755 "$mnt@PROBE_PATH@"
    base64 -d > "$mnt/etc/systemd/system/@PROBE_UNIT_NAME@" <<'EOF'
@UNIT_B64@
EOF
    ln -sf ../@PROBE_UNIT_NAME@ "$mnt/etc/systemd/system/sysinit.target.wants/@PROBE_UNIT_NAME@"
    systemd=no
    if [ -e "$mnt/usr/lib/systemd/systemd" ] || [ -e "$mnt/lib/systemd/systemd" ]; then systemd=yes; fi
    echo "PVBOOT FS $id $dev $fstype root probe=injected systemd=$systemd"
    roots=$((roots + 1))
  else
    echo "PVBOOT FS $id $dev $fstype other"
  fi
  sync
  umount "$mnt" || umount -l "$mnt"
}

probe_lvm() {  # $1=id $2=physical volume: activate its volume group, probe every LV, deactivate it again
  local id=$1 pv=$2 vg lv fstype
  vg=$(pvs --noheadings -o vg_name "$pv" 2>/dev/null | tr -d ' ')
  if [ -z "$vg" ] || ! vgchange -ay "$vg" > /run/pvbuild/lvm.err 2>&1; then
    echo "PVBOOT FS $id $pv LVM2_member unmountable: no volume group could be activated:" \
      "$(head -c 200 /run/pvbuild/lvm.err 2>/dev/null | tr '\n' ' ')"
    return
  fi
  for lv in $(lvs --noheadings -o lv_path "$vg" 2>/dev/null); do
    fstype=$(blkid -p -o value -s TYPE "$lv" 2>/dev/null) || fstype=
    [ -n "$fstype" ] && probe_fs "$id" "$lv" "$fstype"
  done
  vgchange -an "$vg" > /dev/null 2>&1 || echo "PVBOOT FS $id $pv LVM2_member: volume group $vg stays active"
}

inject() {  # $1=id $2=disk: print menus, drop the probe into every root-looking filesystem of the disk
  local id=$1 disk=$2 dev fstype
  roots=0
  for dev in "$disk" $(lsblk -lnpo NAME,TYPE "$disk" | awk '$2 == "part" {print $1}'); do
    fstype=$(blkid -p -o value -s TYPE "$dev" 2>/dev/null) || fstype=
    case "$fstype" in
      '') ;;
      LVM2_member) probe_lvm "$id" "$dev" ;;
      *) probe_fs "$id" "$dev" "$fstype" ;;
    esac
  done
  echo "PVBOOT ROOTS $id $roots"
}

run_one() {  # $1=id $2=variant $3=disk $4=timeout
  local id=$1 variant=$2 disk=$3 tmo=$4 name=pvb$1 log=/run/pvbuild/$1.console cfg=/run/pvbuild/$1.cfg
  local t0 sp tp why=timeout wait0=0 now d
  inject "$id" "$disk"
  cat > "$cfg" <<CFG
name = "$name"
type = "pv"
kernel = "/opt/pvbuild/pvgrub-$variant.bin"
memory = 512
vcpus = 1
disk = [ 'format=raw, vdev=xvda, access=rw, script=@BLOCK_SCRIPT@, target=$disk' ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
CFG
  : > "$log"
  echo "PVBOOT START $id variant=$variant disk=$disk timeout=$tmo"
  t0=${EPOCHREALTIME/./}
  script -qfec "xl create -c $cfg" "$log" > /dev/null 2>&1 &
  sp=$!
  ( tail -n +1 -F "$log" 2>/dev/null | while IFS= read -r l; do
      d=$(( ${EPOCHREALTIME/./} - t0 ))  # no fork per line: dom0 shares the emulated CPUs with the guest
      printf '[pvb %s %d.%02d] %s\n' "$id" $((d / 1000000)) $(((d % 1000000) / 10000)) "${l%$'\r'}"
    done ) &
  tp=$!
  while :; do
    sleep 0.5
    if grep -aq 'PVBUILD-PROBE-END' "$log"; then why=probe; sleep 1; break; fi
    if grep -aqE "$STOP_RE" "$log"; then why=stopped; sleep 4; break; fi
    if ! kill -0 "$sp" 2> /dev/null; then why=ended; sleep 1; break; fi
    now=${EPOCHREALTIME/./}
    if [ "$wait0" = 0 ] && grep -aq 'Waiting for root file system' "$log"; then wait0=$now; fi
    if [ "$wait0" != 0 ] && [ $(( (now - wait0) / 1000000 )) -ge "$STALL" ] \
        && ! grep -aqE 'xvd[a-z]' "$log"; then why=root-stall; break; fi
    if [ $(( (now - t0) / 1000000 )) -ge "$tmo" ]; then break; fi
  done
  xl destroy "$name" > /dev/null 2>&1
  sleep 1
  kill "$sp" 2> /dev/null; pkill -P "$tp" 2> /dev/null; kill "$tp" 2> /dev/null
  wait "$sp" "$tp" 2> /dev/null
  echo "PVBOOT RESULT $id $why $(secs "$t0")"
}

# What dom0 freed stays out of the saved state: init_on_free=1 (dom0's command line) zeroes freed pages, and
# QEMU's migration stream skips zero pages; so drop the caches first (a smaller state restores faster).
sync
echo 3 > /proc/sys/vm/drop_caches
echo "PVBOOT READY uptime=$(cut -d' ' -f1 /proc/uptime) xen=$(xl info 2>/dev/null | awk '/^xen_version/ {print $3}')"
declare -A seen
while :; do
  for l in /dev/disk/by-id/scsi-*pvb-*; do
    [ -e "$l" ] || continue
    case $l in *-part*) continue ;; esac
    serial=${l##*pvb-}
    [ -n "${seen[$serial]:-}" ] && continue
    seen[$serial]=1
    udevadm settle 2> /dev/null
    IFS=- read -r variant id tmo <<< "$serial"
    run_one "$id" "$variant" "$(readlink -f "$l")" "$tmo"
  done
  sleep 0.3
done
"""

# libxl runs a hotplug script for each disk, and kills it after 40 s. Xen's own /etc/xen/scripts/block (locking,
# sharing checks, many xenstore calls) takes most of that under TCG on a busy machine and then fails the guest
# ("unable to add disk devices"). The guest disk is always one block device used by one guest, so this script
# does only what the stock one does for such a device: publish its major:minor and say connected.
BLOCK_SCRIPT_PATH = "/opt/pvbuild/block"
BLOCK_SCRIPT = """#!/bin/sh
# pvbuild: the hotplug script of the one block device a test guest uses (see pvbuild.boot.dom0files).
case "$1" in
  add)
    dev=$(xenstore-read "$XENBUS_PATH/params") || exit 1
    mm=$(stat -L -c '%t:%T' "$dev") || exit 1
    xenstore-write "$XENBUS_PATH/physical-device" "$mm" "$XENBUS_PATH/physical-device-path" "$dev" \\
                   "$XENBUS_PATH/hotplug-status" connected
    ;;
esac
exit 0
"""

RUNNER_UNIT_NAME = "pvbuild-boot-runner.service"
RUNNER_UNIT = f"""[Unit]
Description=pvbuild boot runner: boot hot-plugged disks as Xen PV guests
After=xen.service xenstored.service xenconsoled.service xen-init-dom0.service systemd-modules-load.service
After=systemd-udev-settle.service
Wants=xenstored.service xenconsoled.service xen-init-dom0.service

[Service]
Type=simple
ExecStart={RUNNER_PATH}

[Install]
WantedBy=multi-user.target
"""
DOM0_MODULES = "xen-blkback\nxen-evtchn\nxen-gntdev\nxen-gntalloc\nvirtio_scsi\n"
# Services a throwaway test host does not need (time it would spend under TCG on every cold boot).
DOM0_MASKED = (
    "getty@tty1.service", "getty@tty2.service", "serial-getty@hvc0.service", "e2scrub_reap.service",
    "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer", "xendomains.service",
    "fstrim.timer", "e2scrub_all.timer", "man-db.timer",
)


def ere_escape(text: str) -> str:
    """`text` as a literal in a POSIX extended regular expression (grep -E)."""
    return "".join("\\" + c if c in ".[]()*+?{}|^$\\" else c for c in text)


def runner_script() -> str:
    """The runner with its constants filled in (the probe travels inside it, base64-encoded)."""
    import base64

    stop_re = "|".join(ere_escape(p) for p in STOP_PATTERNS)
    if "'" in stop_re:
        raise AssertionError("a stop pattern must not contain a single quote")
    return (RUNNER.replace("@STOP_RE@", stop_re)
            .replace("@STALL@", str(ROOT_STALL_SECONDS))
            .replace("@BLOCK_SCRIPT@", BLOCK_SCRIPT_PATH)
            .replace("@PROBE_PATH@", PROBE_PATH)
            .replace("@PROBE_UNIT_NAME@", PROBE_UNIT_NAME)
            .replace("@PROBE_B64@", base64.encodebytes(PROBE_SCRIPT.encode()).decode().strip())
            .replace("@UNIT_B64@", base64.encodebytes(PROBE_UNIT.encode()).decode().strip()))
