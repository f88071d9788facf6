"""The PV-GRUB state machine: find menu.lst, pick the entry, run it, follow fallbacks, boot or hang.

Modelled on stage2.c (`cmain`, `run_menu`), cmdline.c (`run_script`), builtins.c (the commands an entry
runs) and stubdom/grub/mini-os.c (`load_image`, `load_initrd`, `load_module`, `pv_boot`: the kernel and
initrd buffers are globals that survive a failed entry, so a fallback entry without `initrd` boots with the
initrd the failed entry loaded).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pvbuild.pvgrub import menu as menumod
from pvbuild.pvgrub.blockio import Disk
from pvbuild.pvgrub.disk import BOOT_DEVICE, Device, parse_device, parse_maxint
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.errors import message as grub_message
from pvbuild.pvgrub.files import EmulatorLimit, FileLayer, Opened
from pvbuild.pvgrub.findings import Finding, error, info, warning
from pvbuild.pvgrub.initrd import inspect_initrd
from pvbuild.pvgrub.kernel import KernelCheck, inspect_kernel
from pvbuild.pvgrub.profiles import Profile

MB_CMDLINE_BUFLEN = 0x6000  # shared.h: `kernel` lines longer than this are Error 28
MAX_GUEST_CMDLINE = 1024  # xen/include/public/xen.h: start_info.cmd_line, NUL included
MAX_CONFIGFILE_RESTARTS = 16
# Filesystem readers' codes for structures GRUB would walk forever.
HANG_CODES = frozenset({"fs-hang", "xfs-hang"})


class Outcome(StrEnum):
    BOOTS = "boots"
    HANG_PROMPT = "hang-prompt"
    HANG_MENU = "hang-menu"


@dataclass
class Tried:
    index: int
    title: str
    error: int | None
    code: str | None = None
    detail: str = ""
    command: str = ""
    line: int = 0


@dataclass
class Loaded:
    """A file a `kernel`/`initrd`/`module` command put in memory.

    `inspection` is the kernel or initrd inspector's answer, computed in a worker thread as soon as the file
    is loaded (xz/zstd release the GIL, so the kernel's decompression overlaps the reading of the initrd).
    """

    opened: Opened
    command_line: str = ""
    inspection: Future[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> Device:
        return self.opened.device

    @property
    def path(self) -> str:
        return self.opened.path


@dataclass
class Run:
    """Everything the emulator learnt; report.py turns it into the JSON contract."""

    profile: Profile
    outcome: Outcome = Outcome.HANG_PROMPT
    menu: tuple[Device, str] | None = None
    menu_text: bytes | None = None
    parsed: menumod.ParsedMenu | None = None
    tried: list[Tried] = field(default_factory=list)
    entry: tuple[int, str] | None = None
    grub_error: GrubError | None = None
    kernel: Loaded | None = None
    initrd: Loaded | None = None
    multiboot_modules: bool = False
    cmdline: str | None = None
    findings: list[Finding] = field(default_factory=list)
    search: list[tuple[str, str]] = field(default_factory=list)  # (location, why it was not used)


class _Boot(Exception):
    """`boot` succeeded: the kernel was accepted by the domain builder."""


class _Hang(Exception):
    def __init__(self, outcome: Outcome, finding: Finding) -> None:
        super().__init__(finding.message)
        self.outcome = outcome
        self.finding = finding


class _Restart(Exception):
    """`configfile F`: cmain starts over with F, opened (like the `default` file next to it) on the root the
    entry had set, since cmain's reset() leaves saved_drive alone."""

    def __init__(self, config: str, root: Device, opened: Opened) -> None:
        super().__init__(config)
        self.config = config
        self.root = root
        self.opened = opened


# Finding code for a GRUB error, by the command that raised it, when the cause has no better code.
_BY_COMMAND: dict[tuple[str, int], str] = {
    ("kernel", Err.FILE_NOT_FOUND): "kernel-not-found",
    ("initrd", Err.FILE_NOT_FOUND): "initrd-not-found",
    ("module", Err.FILE_NOT_FOUND): "initrd-not-found",
}
_BY_NUMBER: dict[int, str] = {
    Err.BAD_FILENAME: "bad-filename",
    Err.BAD_FILETYPE: "bad-file-type",
    Err.BAD_GZIP_DATA: "gzip-bad-data",
    Err.BAD_GZIP_HEADER: "gzip-bad-header",
    Err.BAD_PART_TABLE: "partition-table-invalid",
    Err.BOOT_COMMAND: "entry-no-kernel",
    Err.BOOT_FAILURE: "kernel-format-unknown",
    Err.DEV_FORMAT: "bad-filename",
    Err.DEV_VALUES: "bad-filename",
    Err.EXEC_FORMAT: "kernel-arch-mismatch",
    Err.FILELENGTH: "fs-feature-unsupported",
    Err.FILE_NOT_FOUND: "file-not-found",
    Err.FSYS_CORRUPT: "fs-corrupt",
    Err.FSYS_MOUNT: "fs-unsupported",
    Err.GEOM: "fs-corrupt",
    Err.NEED_LX_KERNEL: "initrd-before-kernel",
    Err.NEED_MB_KERNEL: "module-before-kernel",
    Err.NO_DISK: "partition-not-found",
    Err.NO_PART: "partition-not-found",
    Err.NUMBER_PARSING: "bad-filename",
    Err.NUMBER_OVERFLOW: "bad-filename",
    Err.OUTSIDE_PART: "fs-corrupt",
    Err.READ: "fs-corrupt",
    Err.SYMLINK_LOOP: "symlink-loop",
    Err.UNRECOGNIZED: "menu-scope-error",
    Err.WONT_FIT: "file-too-large",
    Err.BAD_ARGUMENT: "bad-argument",
    Err.PRIVILEGED: "menu-locked",
}


def finding_code(command: str, e: GrubError) -> str:
    """The finding code for a failed command: what the command was loading beats a generic file code."""
    by_cmd = _BY_COMMAND.get((command, e.number))
    if by_cmd and e.code in (None, "file-not-found"):
        return by_cmd
    return e.code or _BY_NUMBER.get(e.number, f"grub-error-{e.number}")


class Machine:
    """One PV-GRUB run over one disk image, for one AKI profile."""

    def __init__(self, disk: Disk, profile: Profile) -> None:
        self.disk = disk
        self.profile = profile
        self.files = FileLayer(disk, profile)
        self.run_state = Run(profile)
        # mini-os.c globals: they survive from one entry to the next.
        self._kernel: Loaded | None = None
        self._module: Loaded | None = None
        self._multiboot = False
        self.kernel_check: KernelCheck | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pvgrub-inspect")

    # --- top level -----------------------------------------------------------------------------------
    def run(self) -> Run:
        try:
            return self._run()
        finally:
            # Inspections of files no boot used are not waited for.
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> Run:
        r = self.run_state
        try:
            found = self._find_menu()
        except _Hang as hang:
            r.outcome = hang.outcome
            r.findings.append(hang.finding)
            return r
        if found is None:
            r.outcome = Outcome.HANG_PROMPT
            return r
        config, device, path, data = found
        root = BOOT_DEVICE
        for _ in range(MAX_CONFIGFILE_RESTARTS):
            try:
                self._run_config(config, root, device, path, data)
                return r
            except _Restart as restart:
                config, root = restart.config, restart.root
                device, path, data = restart.opened.device, restart.opened.path, restart.opened.data
                r.findings.append(info("configfile", f"an entry switched to {config}"))
        r.outcome = Outcome.HANG_MENU
        r.findings.append(error("configfile-loop", f"configfile restarted GRUB more than "
                                                   f"{MAX_CONFIGFILE_RESTARTS} times: PV-GRUB loops forever"))
        return r

    def _find_menu(self) -> tuple[str, Device, str, bytes] | None:
        """The profile's search list; the first menu.lst that opens wins (PVGRUB.md §1)."""
        r = self.run_state
        causes: list[Finding] = []
        for location in self.profile.menu_search():
            try:
                opened = self.files.open(location, BOOT_DEVICE)
            except GrubError as e:
                if e.code in HANG_CODES:
                    hang = error(e.code or "fs-hang", f"looking for {location}: {e.detail}")
                    raise _Hang(Outcome.HANG_PROMPT, hang) from e
                why = f"Error {e.number}: {e.grub_message}" + (f" ({e.detail})" if e.detail else "")
                r.search.append((location, why))
                if (e.code and e.code not in ("file-not-found", "partition-not-found",
                                             "partition-table-invalid")) or (
                        e.number == Err.FSYS_MOUNT):
                    causes.append(error(e.code or "fs-unsupported", e.detail or e.grub_message))
                continue
            except EmulatorLimit as lim:
                r.search.append((location, str(lim)))
                causes.append(error(lim.code, str(lim)))
                continue
            r.menu = (opened.device, opened.path)
            r.menu_text = opened.data
            r.findings.extend(opened.problems)
            return location, opened.device, opened.path, opened.data
        searched = ", ".join(self.profile.menu_search())
        r.findings.append(error("menu-not-found", f"PV-GRUB {self.profile.version} ({self.profile.variant}) "
                                                  f"looked for menu.lst at {searched} and found none: it stops "
                                                  f"at the grub> prompt"))
        seen: set[str] = set()
        for c in causes:
            if c.message not in seen:
                seen.add(c.message)
                r.findings.append(c)
        return None

    def _read_saved_default(self, config: str, root: Device) -> int:
        """cmain: the `default` file in the menu's directory, read before the menu."""
        cut = config.rfind("/")
        name = config[:cut + 1] + "default"
        try:
            return menumod.parse_default_file(self.files.open(name, root, limit=1 << 20).data)
        except (GrubError, EmulatorLimit):
            return 0

    def _run_config(self, config: str, root: Device, device: Device, path: str, data: bytes) -> None:
        r = self.run_state
        r.menu = (device, path)
        saved = self._read_saved_default(config, root)
        try:
            parsed = menumod.parse(data, saved)
        except menumod.FallbackLoop:
            r.outcome = Outcome.HANG_MENU
            r.findings.append(error("fallback-hang", "the fallback list holds 8 entries that all lie past the "
                                                     "last menu entry: GRUB 0.97's clean-up loop never ends"))
            return
        r.parsed = parsed
        self._menu_findings(parsed, config)
        st = parsed.state
        if not parsed.entries:
            r.outcome = Outcome.HANG_PROMPT
            r.findings.append(error("menu-no-entries", f"{config} has no menu entry with a command GRUB knows "
                                                       "(a title followed by root/kernel/...): GRUB stops at "
                                                       "the grub> prompt"))
            return
        if st.timeout < 0:
            r.outcome = Outcome.HANG_MENU
            r.findings.append(error("menu-no-timeout", f"{config} sets no `timeout`: GRUB waits at the menu "
                                                       "forever (hiddenmenu does not change that) and nobody "
                                                       "can press a key on EC2; add `timeout 0` or more"))
            return
        entryno = st.default_entry
        while True:
            entry = parsed.entries[entryno] if 0 <= entryno < len(parsed.entries) else None
            if entry is None:
                # run_menu's get_entry past the end: an empty script, nothing loaded -> back to the menu.
                r.tried.append(Tried(entryno, "", None))
                r.outcome = Outcome.HANG_MENU
                r.findings.append(error("menu-no-entries", f"entry {entryno} does not exist"))
                return
            try:
                self._run_entry(entryno, entry, st, config)
            except _Boot:
                r.tried.append(Tried(entryno, entry.title, None))
                r.entry = (entryno, entry.title)
                r.outcome = Outcome.BOOTS
                if len(r.tried) > 1:
                    hops = "; ".join(f"entry {t.index} failed at line {t.line} `{t.command}` with Error {t.error}"
                                     + (f" ({t.detail})" if t.detail else "") for t in r.tried[:-1])
                    r.findings.append(info("fallback-used", f"booted fallback entry {entryno}: {hops}"))
                return
            except _Hang as hang:
                r.tried.append(Tried(entryno, entry.title, None))
                r.outcome = hang.outcome
                r.findings.append(hang.finding)
                return
            except _CmdError as ce:
                e = ce.error
                r.grub_error = e
                r.tried.append(Tried(entryno, entry.title, e.number, finding_code(ce.command, e), e.detail,
                                     ce.command, ce.line))
                if st.fallback_entryno >= 0:
                    entryno = st.fallback_entries[st.fallback_entryno]
                    st.fallback_entryno += 1
                    if (st.fallback_entryno >= menumod.MAX_FALLBACK_ENTRIES
                            or st.fallback_entries[st.fallback_entryno] < 0):
                        st.fallback_entryno = -1
                    continue
                r.outcome = Outcome.HANG_MENU
                self._failure_findings()
                return
            # The entry ran to its end without loading a kernel: back to the menu, which now waits.
            r.tried.append(Tried(entryno, entry.title, None))
            r.outcome = Outcome.HANG_MENU
            r.findings.append(error("entry-no-kernel", f"entry {entryno} ({entry.title!r}) loads no kernel: "
                                                       "GRUB returns to the menu and waits"))
            return

    def _failure_findings(self) -> None:
        """After the last fallback failed: one finding per distinct cause, then the hang."""
        r = self.run_state
        seen: set[tuple[str, str]] = set()
        for t in r.tried:
            if t.error is None:
                continue
            code = t.code or f"grub-error-{t.error}"
            key = (code, t.detail)
            if key in seen:
                continue
            seen.add(key)
            r.findings.append(error(code, f"entry {t.index} ({t.title!r}), line {t.line} `{t.command}`: "
                                          f"Error {t.error}: {grub_message(t.error)}"
                                          + (f" — {t.detail}" if t.detail else "")))
        r.findings.append(error("boot-failed", "every entry tried failed; GRUB prints \"Press any key to "
                                               "continue...\" and waits at the menu"))

    def _menu_findings(self, parsed: menumod.ParsedMenu, config: str) -> None:
        r = self.run_state
        for line, word in parsed.unknown:
            extra = " (removed from PV-GRUB's build)" if word in menumod.REMOVED_IN_PV else ""
            r.findings.append(warning("menu-unknown-command", f"{config}:{line}: `{word}` is not a PV-GRUB "
                                                              f"command{extra}; GRUB drops the line"))
        for line, word in parsed.ignored_globals:
            r.findings.append(warning("menu-command-before-title",
                                      f"{config}:{line}: `{word}` before the first `title` is ignored"))
        for line, title in parsed.dropped_titles:
            r.findings.append(warning("menu-empty-entry", f"{config}:{line}: title {title!r} has no command "
                                                          "GRUB knows and is dropped; later entries renumber"))

    # --- one entry (cmdline.c run_script) ------------------------------------------------------------
    def _run_entry(self, index: int, entry: menumod.Entry, st: menumod.MenuState, config: str) -> None:
        root = BOOT_DEVICE
        kernel_type = "none"
        for line, text in entry.commands:
            word = menumod.command_word(text)
            flags = menumod.find_command(text)
            assert flags is not None  # the parser keeps known commands only
            arg = menumod.skip_to(True, text)
            if menumod.B.CMDLINE not in flags:
                raise _CmdError(word, line, GrubError(
                    Err.UNRECOGNIZED, f"`{word}` is a global command; inside an entry it is Error 27 — move it "
                                      f"above the first `title`", code="menu-scope-error"))
            try:
                root, kernel_type = self._command(word, arg, root, kernel_type, st, config, index)
            except GrubError as e:
                if e.code in HANG_CODES:
                    raise _Hang(Outcome.HANG_MENU, error(e.code or "fs-hang", f"entry {index}, line {line} `{word}`: "
                                                         f"{e.detail}")) from e
                if e.number == 0:
                    # The command failed without setting errnum: run_script goes on (cmdline.c:196-208) and
                    # whatever it was loading is simply not loaded.
                    self.run_state.findings.append(warning(e.code or "fs-silent-failure", f"entry {index}, line "
                                                           f"{line} `{word}` failed silently: {e.detail}"))
                    if word == "kernel":
                        kernel_type = "none"
                    continue
                raise _CmdError(word, line, e) from e
            except EmulatorLimit as lim:
                raise _Hang(Outcome.HANG_MENU, error(lim.code, str(lim))) from lim
        if kernel_type != "none":
            try:
                self._boot(kernel_type)
            except GrubError as e:
                raise _CmdError("boot", entry.commands[-1][0], e) from e

    def _command(self, word: str, arg: str, root: Device, kernel_type: str, st: menumod.MenuState,
                 config: str, index: int) -> tuple[Device, str]:
        if word in ("root", "rootnoverify"):
            if not arg:
                return root, kernel_type
            if not arg.startswith("("):
                raise GrubError(Err.DEV_FORMAT, f"`{word} {arg.split(maxsplit=1)[0]}`: a GRUB device is "
                                                "written (hd0) or (hd0,N)", code="bad-filename")
            device, _rest = parse_device(arg)
            if word == "root":
                try:
                    self.files.mount(device)
                except GrubError as e:
                    if e.number != Err.FSYS_MOUNT:
                        raise
            else:
                self.files.volume(device)
            return device, kernel_type
        if word == "kernel":
            while True:
                if arg.startswith("--type="):
                    kind = arg[7:]
                    if not any(kind.startswith(k) for k in
                               ("netbsd", "freebsd", "openbsd", "linux", "biglinux", "multiboot")):
                        raise GrubError(Err.BAD_ARGUMENT, f"unknown kernel type in {arg.split(maxsplit=1)[0]}")
                elif not arg.startswith("--no-mem-option"):
                    break
                arg = menumod.skip_to(False, arg)
            if len(arg) + 1 > MB_CMDLINE_BUFLEN:
                raise GrubError(Err.WONT_FIT, "kernel line longer than GRUB's 24 KiB command-line buffer")
            # load_image: the kernel buffer is freed first, so a failed load leaves no kernel at all.
            self._kernel = None
            opened = self._open(arg, root)
            self._kernel = Loaded(opened, menumod.skip_to(False, arg),
                                  self._pool.submit(inspect_kernel, opened.data, self.profile.arch,
                                                    self.profile.compressions))
            return root, "pv"
        if word in ("initrd", "module", "modulenounzip"):
            if kernel_type != "pv":
                if word == "initrd":
                    raise GrubError(Err.NEED_LX_KERNEL, "`initrd` before `kernel`", code="initrd-before-kernel")
                raise GrubError(Err.NEED_MB_KERNEL, f"`{word}` before `kernel`", code="module-before-kernel")
            if word == "initrd":
                # load_initrd: the old module buffer is freed before the new file is read.
                self._module = None
                self._multiboot = False
                opened = self._open(arg, root)
                self._module = Loaded(opened, inspection=self._pool.submit(inspect_initrd, opened.data))
            else:
                opened = self._open(arg, root, decompress=word == "module")
                # load_module: an initrd loaded before is dropped; modules become a multiboot list.
                if not self._multiboot:
                    self._module = None
                self._multiboot = True
                self._module = Loaded(opened, arg)
            return root, kernel_type
        if word == "boot":
            self._boot(kernel_type)
            return root, kernel_type
        if word == "chainloader":
            force = arg.startswith("--force")
            name = menumod.skip_to(False, arg) if force else arg
            opened = self.files.open(name, root)
            if len(opened.data) < 512:
                raise GrubError(Err.EXEC_FORMAT, "chainloader file shorter than one sector")
            if not force and opened.data[510:512] != b"\x55\xaa":
                raise GrubError(Err.EXEC_FORMAT, "chainloader target has no boot signature")
            return root, "chainloader"
        if word == "configfile":
            opened = self.files.open(arg, root)
            raise _Restart(arg.split()[0] if arg.split() else arg, root, opened)
        if word == "savedefault":
            cut = config.rfind("/")
            default_file = config[:cut + 1] + "default"
            if arg.startswith("fallback"):
                if not st.fallbacks():
                    raise GrubError(Err.BAD_ARGUMENT, "`savedefault fallback` in the last fallback entry")
            elif arg and parse_maxint(arg, 0) is None:
                raise GrubError(Err.NUMBER_PARSING, f"savedefault {arg}")
            try:
                self.files.open(default_file, BOOT_DEVICE, decompress=False, limit=1 << 20)
            except GrubError as e:
                raise GrubError(e.number, f"savedefault needs the file {default_file}; create it (e.g. "
                                          "`echo 0 > /boot/grub/default`) or drop savedefault",
                                code="savedefault-no-file") from e
            return root, kernel_type
        if word == "password":
            raise _Hang(Outcome.HANG_PROMPT, error("menu-password-prompt", f"entry {index} runs `password`: "
                                                   "GRUB asks for a password on the console and waits forever"))
        if word == "lock":
            if st.password is not None:
                raise GrubError(Err.PRIVILEGED, "`lock` with a global password: the entry needs a password "
                                                "nobody can type on EC2", code="menu-locked")
            return root, kernel_type
        if word == "pause":
            raise _Hang(Outcome.HANG_MENU, error("menu-pause", f"entry {index} runs `pause`: GRUB waits for a "
                                                 "key press forever"))
        if word in ("halt", "reboot"):
            raise _Hang(Outcome.HANG_MENU, error(f"menu-{word}", f"entry {index} runs `{word}` before any "
                                                 "kernel boots"))
        if word in ("cat", "cmp"):
            for name in arg.split()[:2]:
                self.files.open(name, root)
            return root, kernel_type
        if word == "find":
            name = menumod.skip_to(False, "x " + arg)
            target = name.split()[0] if name.split() else ""
            if not target.startswith("/"):
                raise GrubError(Err.BAD_FILENAME, f"find {target}")
            if not any(self.files.exists(dev + target, root) for dev in self._devices()):
                raise GrubError(Err.FILE_NOT_FOUND, f"find {target}: on no partition")
            return root, kernel_type
        # Everything else (color, print, terminal, map, hide, ...) has no effect on what boots.
        return root, kernel_type

    def _open(self, name: str, root: Device, *, decompress: bool = True) -> Opened:
        """Open a file an entry loads; what the file layer noticed about it becomes findings."""
        opened = self.files.open(name, root, decompress=decompress)
        self.run_state.findings.extend(opened.problems)
        return opened

    def _devices(self) -> list[str]:
        from pvbuild.pvgrub.disk import read_layout

        layout = read_layout(self.disk)
        return ["(hd0)"] + [f"(hd0,{p.index})" for p in layout.partitions]

    def _boot(self, kernel_type: str) -> None:
        """boot_func: PV kernels go to kexec (libxc's loaders); anything else is Error 8 on mini-os."""
        if kernel_type != "pv" or self._kernel is None:
            raise GrubError(Err.BOOT_COMMAND, "nothing bootable was loaded (chainloader is not supported "
                                              "by PV-GRUB)" if kernel_type == "chainloader" else
                            "no kernel loaded", code="kernel-not-found" if kernel_type == "none" else
                            "chainloader-unsupported")
        assert self._kernel.inspection is not None
        check: KernelCheck = self._kernel.inspection.result()
        self.kernel_check = check
        r = self.run_state
        r.kernel = self._kernel
        r.initrd = None if self._multiboot else self._module
        r.multiboot_modules = self._multiboot
        if check.grub_error is not None:
            raise check.grub_error
        raw = self._kernel.command_line
        r.cmdline = raw.encode("latin-1")[:MAX_GUEST_CMDLINE - 1].decode("latin-1")
        raise _Boot


class _CmdError(Exception):
    def __init__(self, command: str, line: int, error: GrubError) -> None:
        super().__init__(str(error))
        self.command = command
        self.line = line
        self.error = error
