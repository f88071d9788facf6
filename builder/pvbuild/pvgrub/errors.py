"""GRUB 0.97 error numbers and the exception that carries them.

The numbers and messages are GRUB's own (stage2/shared.h `grub_error_t`, stage2/common.c `err_list`): the
emulator reports the exact "Error N: message" line PV-GRUB would print.
"""

from __future__ import annotations

from enum import IntEnum


class Err(IntEnum):
    NONE = 0
    BAD_FILENAME = 1
    BAD_FILETYPE = 2
    BAD_GZIP_DATA = 3
    BAD_GZIP_HEADER = 4
    BAD_PART_TABLE = 5
    BAD_VERSION = 6
    BELOW_1MB = 7
    BOOT_COMMAND = 8
    BOOT_FAILURE = 9
    BOOT_FEATURES = 10
    DEV_FORMAT = 11
    DEV_VALUES = 12
    EXEC_FORMAT = 13
    FILELENGTH = 14
    FILE_NOT_FOUND = 15
    FSYS_CORRUPT = 16
    FSYS_MOUNT = 17
    GEOM = 18
    NEED_LX_KERNEL = 19
    NEED_MB_KERNEL = 20
    NO_DISK = 21
    NO_PART = 22
    NUMBER_PARSING = 23
    OUTSIDE_PART = 24
    READ = 25
    SYMLINK_LOOP = 26
    UNRECOGNIZED = 27
    WONT_FIT = 28
    WRITE = 29
    BAD_ARGUMENT = 30
    UNALIGNED = 31
    PRIVILEGED = 32
    DEV_NEED_INIT = 33
    NO_DISK_SPACE = 34
    NUMBER_OVERFLOW = 35


MESSAGES: dict[int, str] = {
    Err.BAD_ARGUMENT: "Invalid argument",
    Err.BAD_FILENAME: "Filename must be either an absolute pathname or blocklist",
    Err.BAD_FILETYPE: "Bad file or directory type",
    Err.BAD_GZIP_DATA: "Bad or corrupt data while decompressing file",
    Err.BAD_GZIP_HEADER: "Bad or incompatible header in compressed file",
    Err.BAD_PART_TABLE: "Partition table invalid or corrupt",
    Err.BAD_VERSION: "Mismatched or corrupt version of stage1/stage2",
    Err.BELOW_1MB: "Loading below 1MB is not supported",
    Err.BOOT_COMMAND: "Kernel must be loaded before booting",
    Err.BOOT_FAILURE: "Unknown boot failure",
    Err.BOOT_FEATURES: "Unsupported Multiboot features requested",
    Err.DEV_FORMAT: "Unrecognized device string",
    Err.DEV_NEED_INIT: "Device not initialized yet",
    Err.DEV_VALUES: "Invalid device requested",
    Err.EXEC_FORMAT: "Invalid or unsupported executable format",
    Err.FILELENGTH: "Filesystem compatibility error, cannot read whole file",
    Err.FILE_NOT_FOUND: "File not found",
    Err.FSYS_CORRUPT: "Inconsistent filesystem structure",
    Err.FSYS_MOUNT: "Cannot mount selected partition",
    Err.GEOM: "Selected cylinder exceeds maximum supported by BIOS",
    Err.NEED_LX_KERNEL: "Linux kernel must be loaded before initrd",
    Err.NEED_MB_KERNEL: "Multiboot kernel must be loaded before modules",
    Err.NO_DISK: "Selected disk does not exist",
    Err.NO_DISK_SPACE: "No spare sectors on the disk",
    Err.NO_PART: "No such partition",
    Err.NUMBER_OVERFLOW: "Overflow while parsing number",
    Err.NUMBER_PARSING: "Error while parsing number",
    Err.OUTSIDE_PART: "Attempt to access block outside partition",
    Err.PRIVILEGED: "Must be authenticated",
    Err.READ: "Disk read error",
    Err.SYMLINK_LOOP: "Too many symbolic links",
    Err.UNALIGNED: "File is not sector aligned",
    Err.UNRECOGNIZED: "Unrecognized command",
    Err.WONT_FIT: "Selected item cannot fit into memory",
    Err.WRITE: "Disk write error",
}


def message(number: int) -> str:
    return MESSAGES.get(number, f"Unknown error {number}")


class GrubError(Exception):
    """A GRUB error: what GRUB prints ("Error N: ...") plus why, for the report.

    `code` is the emulator's finding code (e.g. "fs-64bit") when the cause is more specific than GRUB's
    number; `detail` is a human sentence naming the device, path or structure involved.
    """

    def __init__(self, number: int, detail: str = "", code: str | None = None) -> None:
        super().__init__(f"Error {number}: {message(number)}" + (f" ({detail})" if detail else ""))
        self.number = int(number)
        self.detail = detail
        self.code = code

    @property
    def grub_message(self) -> str:
        return message(self.number)


class ImageError(Exception):
    """The input is not something the emulator can read at all (missing, unreadable, not a disk image)."""
