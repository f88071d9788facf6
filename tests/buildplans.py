"""Plans for the build tests, made by hand (the recipe side builds them from YAML; this tests the build alone).

`debian12(table=..., separate_boot=..., ...)` gives a complete Debian 12 amd64 Plan: partitionless (hd0 AKI)
or MBR (hd00 AKI), optionally with a separate ext4 or XFS /boot, its menu.lst text written here the way
templates/menu.lst.j2 renders it (newest kernel first, the previous one as the fallback).
"""

from __future__ import annotations

from pathlib import Path

from pvbuild.build.run import run
from pvbuild.distros import debian
from pvbuild.planmodel import (
    DiskPlan,
    DistroPlan,
    FileOverlay,
    FilesystemPlan,
    InitrdPlan,
    KernelPlan,
    MenuEntryPlan,
    MenuPlan,
    OutputPlan,
    Plan,
    PvgrubPlan,
    UserPlan,
)

MIB = 1024 * 1024
EPOCH = 1_700_000_000
ROOT_UUID = "7c0a6f0e-3a55-4d6b-9a53-1f0c2e9d8b01"
BOOT_UUID = "7c0a6f0e-3a55-4d6b-9a53-1f0c2e9d8b02"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKs1pvbuildtestkeyxxxxxxxxxxxxxxxxxxxxxxxxxxx test@pvbuild"


def debian12(out: Path, *, name: str = "debian12", table: str = "none", separate_boot: str | None = None,
             kernel_package: str = "linux-image-amd64", packages: tuple[str, ...] = ("openssh-server",),
             disk_mib: int = 1536, pvgrub_version: str = "1.05", hostname: str = "pvtest",
             users: bool = True, epoch: int = EPOCH, root_fs: str = "ext4", backend: str = "mmdebstrap") -> Plan:
    """A Debian 12 amd64 plan. `table`: "none" (hd0) or "mbr" (hd00); `separate_boot`: None, "ext4" or "xfs";
    `backend`: "mmdebstrap" or "diskimage-builder" (its element: debian-minimal)."""
    variant = "hd0" if table == "none" else "hd00"
    fss: list[FilesystemPlan] = []
    if table == "none":
        fss.append(FilesystemPlan("/", "ext4", "rootfs", ROOT_UUID, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                                  ("-O", "^64bit"), disk_mib * MIB, "", 0, "(hd0)", "/dev/xvda1"))
    else:
        off = 1 * MIB
        if separate_boot:
            bsize = 256 * MIB
            bopts = ("-m", "crc=0", "-n", "ftype=0") if separate_boot == "xfs" else ("-O", "^64bit")
            fss.append(FilesystemPlan("/boot", separate_boot, "boot", BOOT_UUID,  # type: ignore[arg-type]
                                      None if separate_boot == "xfs" else "1f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                                      bopts, bsize, "83", off, "(hd0,0)", "/dev/xvda1"))
            off += bsize
        n = len(fss)
        xfs_root = root_fs == "xfs"
        fss.append(FilesystemPlan("/", "xfs" if xfs_root else "ext4", "rootfs", ROOT_UUID,
                                  None if xfs_root else "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                                  () if xfs_root else ("-O", "^64bit"), disk_mib * MIB - off, "83", off,
                                  f"(hd0,{n})", f"/dev/xvda{n + 1}"))
    disk = DiskPlan(table, disk_mib * MIB, None if table == "none" else "0x5eed1234", tuple(fss))  # type: ignore[arg-type]
    boot = disk.boot
    prefix = "" if separate_boot else "/boot"
    root_arg = f"root=UUID={ROOT_UUID}"
    kernel = KernelPlan(kernel_package, root_arg, "hvc0", (), f"{prefix}/vmlinuz", f"{prefix}/initrd.img",
                        f"{prefix}/vmlinuz.old", f"{prefix}/initrd.img.old", None)
    args = kernel.cmdline
    entries = (
        MenuEntryPlan("Debian GNU/Linux 12 (newest kernel)", boot.grub_device, kernel.image_link, kernel.initrd_link,
                      args),
        MenuEntryPlan("Debian GNU/Linux 12 (previous kernel)", boot.grub_device, kernel.old_image_link,
                      kernel.old_initrd_link, args),
    )
    text = "default 0\nfallback 1\ntimeout 1\nhiddenmenu\n"
    for e in entries:
        text += f"\ntitle {e.title}\nroot {e.root}\nkernel {e.kernel} {e.args}\ninitrd {e.initrd}\n"
    menu = MenuPlan(0, (1,), 1, True, entries, text, f"{prefix}/grub/menu.lst")
    modules = ("xen-blkfront", "xen-netfront", "ext4") + (("xfs",) if "xfs" in (separate_boot, root_fs) else ())
    return Plan(
        recipe=str(out / "recipe.yaml"), name=name, hostname=hostname, source_date_epoch=epoch,
        distro=DistroPlan("debian", "bookworm", "12", *debian.mirrors(None, None), ("main",), "amd64",
                          backend,  # type: ignore[arg-type]
                          "minbase" if backend == "mmdebstrap" else "",
                          tuple(sorted({*packages, "initramfs-tools", "zstd"})), dib_element="debian-minimal"),
        kernel=kernel,
        initrd=InitrdPlan("update-initramfs", modules, "zstd"),
        disk=disk, menu=menu, pvgrub=PvgrubPlan(pvgrub_version, variant, "x86_64"),  # type: ignore[arg-type]
        files=(FileOverlay("", "/etc/motd", 0o644, "Built by pvbuild's tests.\n"),),
        users=(UserPlan("admin", ("adm",), "/bin/bash", None, (SSH_KEY,), False),) if users else (),
        root_ssh_authorized_keys=(SSH_KEY,) if users else (),
        output=OutputPlan(str(out / name), f"{name}.raw", ("raw",)),
        pvbuild_version="0.1.0",
    )


def debugfs(image: Path, request: str, offset: int = 0) -> str:
    target = f"{image}?offset={offset}" if offset else str(image)
    return run(["debugfs", "-R", request, target], capture=True).stdout.decode()


def assert_image_hygiene(plan: Plan, img: Path) -> None:
    """What every built image of `debian12()` holds, whichever backend made its tree: the elements' work and
    nothing of the build host."""
    assert "ssh_host_" not in debugfs(img, "ls /etc/ssh")
    unit = debugfs(img, "cat /etc/systemd/system/pvbuild-ssh-hostkeys.service")
    assert "ssh-keygen -A" in unit and "Before=ssh.service" in unit
    assert "pvbuild-ssh-hostkeys" in debugfs(img, "ls /etc/systemd/system/multi-user.target.wants")
    assert debugfs(img, "cat /etc/machine-id") == ""
    assert "not found" in run(["debugfs", "-R", "stat /etc/resolv.conf", img], capture=True).stderr.decode()
    assert debugfs(img, "cat /etc/hostname") == "pvtest\n"
    lists = debugfs(img, "ls /var/lib/apt/lists").split()
    assert [n for n in lists if not n.startswith("(") and not n.isdigit()] == [".", "..", "partial"]
    tmp = debugfs(img, "ls /tmp").split()
    assert [n for n in tmp if not n.startswith("(") and not n.isdigit()] == [".", ".."]
    for line in debugfs(img, "ls -l /var/log").splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].startswith("100"):
            assert parts[5] == "0", line  # every log file empty (inode, mode, (links), uid, gid, size)
    assert "policy-rc.d" not in debugfs(img, "ls /usr/sbin")
    assert debugfs(img, "cat /boot/grub/menu.lst") == plan.menu.text
    assert f"UUID={plan.disk.root.uuid}\t/\text4" in debugfs(img, "cat /etc/fstab")
    assert debugfs(img, "cat /root/.ssh/authorized_keys").strip() == plan.root_ssh_authorized_keys[0]
    assert debugfs(img, "cat /home/admin/.ssh/authorized_keys").strip() == plan.users[0].ssh_authorized_keys[0]
    assert debugfs(img, "cat /etc/motd") == "Built by pvbuild's tests.\n"
    assert "link_in_boot = yes" in debugfs(img, "cat /etc/kernel-img.conf")
    conf = debugfs(img, "cat /etc/initramfs-tools/conf.d/pvgrub")
    assert "MODULES=list" in conf and "COMPRESS=zstd" in conf
    assert [ln for ln in debugfs(img, "cat /etc/initramfs-tools/modules").splitlines()
            if not ln.startswith("#")] == list(plan.initrd.modules)
    for link in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        assert "Type: symlink" in debugfs(img, f"stat /boot/{link}"), link
    run(["e2fsck", "-fn", img])
