"""The Plan: every decision of a build made explicit, printable and frozen.

`plan.py` turns a Recipe into a Plan (all defaults and cross-field rules live there); everything after it —
the rootfs build, the elements, the disk layout, the check — reads the Plan only, never the recipe.
`Plan.to_json()` is what `pvbuild plan --json` prints and what the build writes to `plan.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

TableKind = Literal["none", "mbr", "gpt"]
FsType = Literal["ext2", "ext3", "ext4", "xfs", "btrfs", "reiserfs", "jfs"]


@dataclass(frozen=True)
class DistroPlan:
    """What the rootfs is made of. `mirror` is a full archive URL; `security_mirror` may be empty."""

    family: Literal["debian", "ubuntu", "fedora", "centos", "rhel", "opensuse", "sles", "amazon", "gentoo"]
    release: str  # e.g. "bookworm", "bionic", "7" (what the archive and DIB_RELEASE call it)
    version: str  # e.g. "12"
    mirror: str
    security_mirror: str
    components: tuple[str, ...]  # apt families only
    deb_arch: Literal["amd64", "i386"]  # also diskimage-builder's ARCH
    backend: Literal["mmdebstrap", "diskimage-builder"]
    variant: str  # mmdebstrap variant, "minbase" ("" for diskimage-builder)
    # Packages installed by the bootstrap (the cached layer): the recipe's plus what the elements need.
    packages: tuple[str, ...]
    dib_element: str | None = None  # the diskimage-builder element for this release (None: none builds it)
    # How the release's kernel is compressed (distros/): "" when the recipe names a kernel pvbuild does not know.
    kernel_compression: str = ""


@dataclass(frozen=True)
class LvmPlan:
    """A filesystem on an LVM logical volume: one PV (the partition), one VG, one linear LV over every extent.

    The UUIDs (LVM's 32-character form, 6-4-4-4-4-4-6) are fixed at plan time like the filesystems' own, and the
    LV's place in the partition is too: it starts at `pe_start` (the first extent) and is `lv_bytes` long.
    """

    vg: str
    lv: str
    pv_uuid: str
    vg_uuid: str
    lv_uuid: str
    extent_bytes: int  # 4 MiB
    pe_start_bytes: int  # where the first extent starts in the partition (1 MiB)
    extent_count: int  # every extent of the PV

    @property
    def lv_bytes(self) -> int:
        return self.extent_count * self.extent_bytes

    @property
    def dm_name(self) -> str:
        """The device-mapper name (/dev/mapper/NAME): dashes doubled, VG and LV joined by one dash."""
        return self.vg.replace("-", "--") + "-" + self.lv.replace("-", "--")


@dataclass(frozen=True)
class FilesystemPlan:
    """One filesystem: where it is mounted in the guest, how it is made, and how it is named.

    `uuid`, `hash_seed` and `label` are fixed at plan time (derived from the recipe when not given) so two
    builds of the same recipe are byte-identical and fstab/menu.lst can name them before anything exists.
    """

    mountpoint: str  # "/" or "/boot"
    fstype: FsType
    label: str
    uuid: str
    hash_seed: str | None  # ext* only
    mkfs_options: tuple[str, ...]  # extra options for mkfs (PV-GRUB-safe defaults already included)
    size_bytes: int  # the partition size (the whole disk for a partitionless image)
    part_type: str  # MBR type as sfdisk writes it ("83"), a GPT type GUID, "" for a partitionless image
    offset_bytes: int  # where the partition starts in the image (0 for partitionless)
    grub_device: str  # "(hd0)" or "(hd0,N)"
    linux_device: str  # "/dev/xvda1" as the guest sees it (for reports; fstab uses UUID/LABEL); LVM: /dev/mapper/..
    part_uuid: str = ""  # GPT: the partition's unique GUID
    lvm: LvmPlan | None = None  # the filesystem is on this logical volume inside the partition

    @property
    def fs_offset_bytes(self) -> int:
        """Where the filesystem itself starts in the image (past the LVM label and metadata on an LV)."""
        return self.offset_bytes + (self.lvm.pe_start_bytes if self.lvm else 0)

    @property
    def fs_size_bytes(self) -> int:
        return self.lvm.lv_bytes if self.lvm else self.size_bytes


@dataclass(frozen=True)
class DiskPlan:
    table: TableKind
    size_bytes: int
    disk_id: str | None  # MBR label-id (0x12345678) or GPT disk GUID, derived from the recipe
    filesystems: tuple[FilesystemPlan, ...]  # in partition order; exactly one for table "none"

    @property
    def root(self) -> FilesystemPlan:
        return next(f for f in self.filesystems if f.mountpoint == "/")

    @property
    def boot(self) -> FilesystemPlan:
        """The filesystem that holds /boot (the separate /boot, or the root)."""
        return next((f for f in self.filesystems if f.mountpoint == "/boot"), self.root)


@dataclass(frozen=True)
class KernelPlan:
    package: str  # e.g. "linux-image-amd64"
    root_arg: str  # "root=UUID=..." / "root=LABEL=..." / "root=/dev/xvda1"
    console: str  # "hvc0"
    extra_args: tuple[str, ...]
    # Files the menu names: stable symlinks maintained by the distro's kernel hooks (/boot/vmlinuz and
    # /boot/vmlinuz.old, /boot/initrd.img and /boot/initrd.img.old), relative to the /boot filesystem's
    # view when /boot is separate.
    image_link: str
    initrd_link: str
    old_image_link: str
    old_initrd_link: str
    pinned_fallback: str | None  # a kernel version to keep as the fallback entry, if the recipe pins one

    @property
    def cmdline(self) -> str:
        return " ".join([self.root_arg, "ro", f"console={self.console}", *self.extra_args])


@dataclass(frozen=True)
class InitrdPlan:
    tool: Literal["update-initramfs", "dracut", "mkinitrd"]
    # Modules the initrd must carry (MODULES=list / dracut --add-drivers): xen-blkfront, xen-netfront and
    # the root filesystem's module, plus the recipe's.
    modules: tuple[str, ...]
    compression: str  # "zstd", "gzip", "xz" ...


@dataclass(frozen=True)
class MenuEntryPlan:
    title: str
    root: str  # GRUB device
    kernel: str  # path on that device
    initrd: str | None
    args: str


@dataclass(frozen=True)
class MenuPlan:
    default: int
    fallback: tuple[int, ...]
    timeout: int | None
    hiddenmenu: bool
    entries: tuple[MenuEntryPlan, ...]
    text: str  # menu.lst exactly as written to the image
    path_in_boot_fs: str  # "/boot/grub/menu.lst" (partitionless) or "/grub/menu.lst" inside a separate /boot


@dataclass(frozen=True)
class PvgrubPlan:
    version: str
    variant: Literal["hd0", "hd00"]
    arch: Literal["x86_64", "i386"]


@dataclass(frozen=True)
class FileOverlay:
    source: str  # absolute path on the build host (resolved relative to the recipe)
    dest: str  # absolute path in the image
    mode: int | None
    content: str | None = None  # inline content instead of a source file


@dataclass(frozen=True)
class UserPlan:
    name: str
    groups: tuple[str, ...]
    shell: str
    password_hash: str | None  # crypt(3) hash; None = locked password
    ssh_authorized_keys: tuple[str, ...]
    sudo: bool


@dataclass(frozen=True)
class OutputPlan:
    directory: str  # absolute
    image_name: str  # "NAME.raw"
    formats: tuple[str, ...]  # "raw" for now


@dataclass(frozen=True)
class BundlePlan:
    bucket: str  # may contain {region}
    prefix: str
    user: str  # 12 digits
    cert: str  # absolute
    private_key: str  # absolute
    ec2_cert: str | None  # absolute; None: the certificate pvbuild ships for each region


@dataclass(frozen=True)
class AkiChoice:
    region: str
    aki_id: str
    name: str  # pv-grub-hd0_1.05-x86_64.gz


@dataclass(frozen=True)
class AwsPlan:
    """Where and how the built image is registered (the recipe's `aws` section, resolved)."""

    regions: tuple[str, ...]
    ami_name: str
    description: str
    backing: str  # "ebs" | "s3"
    volume_size_gib: int | None
    volume_type: str
    delete_on_termination: bool
    bundle: BundlePlan | None
    tags: tuple[tuple[str, str], ...]
    aki_lookup: str  # "live" | "table"
    replace: bool
    root_device: str  # /dev/sda1 (partitionless) or /dev/sda (partitioned)
    table_akis: tuple[AkiChoice, ...]  # the embedded table's choice per region; live lookup may pick newer


@dataclass(frozen=True)
class Plan:
    recipe: str  # the recipe file, absolute
    name: str
    hostname: str
    source_date_epoch: int
    distro: DistroPlan
    kernel: KernelPlan
    initrd: InitrdPlan
    disk: DiskPlan
    menu: MenuPlan
    pvgrub: PvgrubPlan
    files: tuple[FileOverlay, ...]
    users: tuple[UserPlan, ...]
    root_ssh_authorized_keys: tuple[str, ...]
    output: OutputPlan
    aws: AwsPlan | None = None
    warnings: tuple[str, ...] = ()
    pvbuild_version: str = ""
    # `--locked`: every package of the bootstrap pinned to (name, version, arch) from RECIPE.lock.
    locked: tuple[tuple[str, str, str], ...] = ()
    # recipe `boot: true`: the build boots the image as a Xen PV guest after the emulator check (pvbuild boot).
    boot: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
