"""Reading the serial transcript of one boot into what happened: milestones, the chosen entry, the failure.

Pure functions over text (no QEMU needed), so every rule here is unit-tested on console excerpts. The transcript
format is the dom0 runner's (see `dom0files`): `PVBOOT <WHAT> <id> ...` lines from the runner, and
`[pvb <id> <seconds>] <guest console line>` for each line the guest printed, timed from `xl create`.

Milestones, each the first line that shows it:
  loader_s        the GRUB 2 legacy loader runs its config (`PVBUILD-LOADER`), i.e. the domain started;
  kernel_s        the guest kernel's first line (`Linux version ...`);
  root_mounted_s  the root filesystem mounted (ext2/3/4, XFS, btrfs mount lines on a xvd disk, `VFS: Mounted
                  root`), or else the first line of the init on it (systemd's banner);
  userspace_s     the probe's end marker, printed by a unit of the guest's own systemd on its real root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pvbuild.boot.dom0files import ROOT_STALL_SECONDS

_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][A-Za-z0-9]|[=>78cDEHMNO])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_GUEST = re.compile(r"\[pvb (\S+) (\d+(?:\.\d+)?)\] ?(.*)$")
_RUNNER = re.compile(r"PVBOOT (TITLE|FS|ROOTS|START|RESULT) (\S+) ?(.*)$")
_BOOTING = re.compile(r"(Booting|Falling back to) [`‘'](.*)['’]\s*$")
_LINUX = re.compile(r"Linux version (\S+)")
_KCMDLINE = re.compile(r"(?:Kernel )?[Cc]ommand line: (.*)$")
_ROOT_MOUNT = re.compile(
    r"(EXT[234]-fs \((xvd[a-z]+\d*|dm-\d+)\): mounted filesystem"
    r"|XFS \((xvd[a-z]+\d*|dm-\d+)\): Ending clean mount"
    r"|BTRFS info \(device (xvd[a-z]+\d*)\).*(?:enabling|disk space caching|has skinny extents|first mount)"
    r"|VFS: Mounted root)")
_INIT_STARTED = re.compile(r"(systemd\[1\]: |Welcome to |INIT: version )")
_GRUB_ERROR = re.compile(r"^\s*error: (.*)$")
_PROBE = re.compile(r"PVBUILD-PROBE (kernel|cmdline|root|init)=(.*)$")
# A kernel message printed on hvc0 while the probe's echo was on its way lands on the same line, after the value
# (`root=/dev/xvda[   35.065705] systemd[1]: ...`): the value ends where a printk timestamp starts.
_PRINTK_TAIL = re.compile(r"\[\s*\d+\.\d+\].*$")


def probe_value(key: str, raw: str) -> str:
    """The probe's value without a kernel message glued to it; kernel, root and init are one word each."""
    value = _PRINTK_TAIL.sub("", raw).strip()
    if key != "cmdline" and value:
        value = value.split()[0]
    return value


def clean(text: str) -> str:
    """A console line without terminal escapes and control characters."""
    return _CONTROL.sub("", _ANSI.sub("", text)).rstrip()


@dataclass(frozen=True)
class GuestLine:
    t: float
    text: str


@dataclass
class Transcript:
    """One guest's part of the serial log."""

    ident: str
    lines: list[GuestLine] = field(default_factory=list)
    titles: list[tuple[str, str, int, str]] = field(default_factory=list)  # device, path, index, title
    filesystems: list[str] = field(default_factory=list)
    roots: int | None = None
    started: str | None = None
    result: str | None = None  # the runner's reason to stop: probe, stopped, ended, root-stall, timeout
    result_s: float | None = None
    runner: list[str] = field(default_factory=list)


def split_transcript(serial_lines: list[str], ident: str) -> Transcript:
    """The lines of guest `ident` (runner lines and guest console lines) out of the whole serial log."""
    tr = Transcript(ident)
    for raw in serial_lines:
        line = raw.rstrip("\r\n")
        g = _GUEST.search(line)
        if g is not None:
            if g.group(1) == ident:
                tr.lines.append(GuestLine(float(g.group(2)), clean(g.group(3))))
            continue
        m = _RUNNER.search(line)
        if m is None or m.group(2) != ident:
            continue
        kind, rest = m.group(1), clean(m.group(3))
        tr.runner.append(f"{kind} {rest}")
        if kind == "TITLE":
            parts = rest.split(" ", 3)
            if len(parts) >= 3 and parts[2].isdigit():
                tr.titles.append((parts[0], parts[1], int(parts[2]), parts[3].strip() if len(parts) > 3 else ""))
        elif kind == "FS":
            tr.filesystems.append(rest)
        elif kind == "ROOTS" and rest.strip().isdigit():
            tr.roots = int(rest.strip())
        elif kind == "START":
            tr.started = rest
        elif kind == "RESULT":
            parts = rest.split()
            tr.result = parts[0] if parts else "unknown"
            try:
                tr.result_s = float(parts[1]) if len(parts) > 1 else None
            except ValueError:
                tr.result_s = None
    return tr


@dataclass
class Outcome:
    reached_userspace: bool
    entry: dict[str, Any] | None
    kernel_version: str | None
    cmdline: str | None
    root_device: str | None
    milestones: dict[str, float | None]
    failure: str | None
    menu: str | None  # the menu.lst the loader ran, as it announced it


def _first(lines: list[GuestLine], pattern: re.Pattern[str]) -> tuple[GuestLine, re.Match[str]] | None:
    for gl in lines:
        m = pattern.search(gl.text)
        if m is not None:
            return gl, m
    return None


def _has(lines: list[GuestLine], text: str) -> GuestLine | None:
    return next((gl for gl in lines if text in gl.text), None)


def chosen_entry(tr: Transcript, menu: str | None, before: float | None) -> dict[str, Any] | None:
    """The menu entry GRUB 2 last announced (`Booting` or `Falling back to`) before the kernel started.

    Its index is the position of the first entry with that title in the menu.lst the loader read, as the runner
    listed it; None when the title is not in that list (e.g. two files, or a title GRUB 2 rewrote).
    """
    title = None
    for gl in tr.lines:
        if before is not None and gl.t > before:
            break
        m = _BOOTING.search(gl.text)
        if m is not None:
            title = m.group(2)
    if title is None:
        return None
    path = None
    if menu is not None:
        path = "/" + menu.split(")/", 1)[1] if ")/" in menu else None
    candidates = [t for t in tr.titles if path is None or t[1] == path]
    if candidates:
        first_dev = candidates[0][0]
        for dev, _p, index, t in candidates:
            if dev == first_dev and t == title:
                return {"index": index, "title": title}
    return {"index": None, "title": title}


def analyse(tr: Transcript, timeout: float) -> Outcome:
    lines = tr.lines
    probe: dict[str, str] = {}
    for gl in lines:
        m = _PROBE.search(gl.text)
        if m is not None and m.group(1) not in probe:
            probe[m.group(1)] = probe_value(m.group(1), m.group(2))
    end = _has(lines, "PVBUILD-PROBE-END")
    loader = next((gl for gl in lines if "PVBUILD-LOADER" in gl.text and "PVBUILD-LOADER-FAIL" not in gl.text),
                  None)
    menu_line = next((gl.text.split("PVBUILD-LOADER menu ", 1)[1].strip() for gl in lines
                      if "PVBUILD-LOADER menu " in gl.text), None)
    kernel = _first(lines, _LINUX)
    kernel_t = kernel[0].t if kernel else None
    mounted = _first(lines, _ROOT_MOUNT)
    if mounted is None and kernel is not None:
        mounted = _first([gl for gl in lines if gl.t >= kernel[0].t], _INIT_STARTED)
    root_t = mounted[0].t if mounted else (end.t if end else None)
    milestones = {
        "loader_s": loader.t if loader else None,
        "kernel_s": kernel_t,
        "root_mounted_s": root_t,
        "userspace_s": end.t if end else None,
    }
    kcmd = _first(lines, _KCMDLINE) if kernel else None
    cmdline = probe.get("cmdline") or (kcmd[1].group(1).strip() if kcmd else None)
    version = probe.get("kernel") or (kernel[1].group(1) if kernel else None)
    entry = chosen_entry(tr, menu_line, kernel_t)
    failure = None if end is not None else diagnose(tr, kernel is not None, root_t is not None, timeout)
    return Outcome(end is not None, entry, version, cmdline, probe.get("root"), milestones, failure, menu_line)


def _grub_errors(lines: list[GuestLine]) -> list[str]:
    out: list[str] = []
    for gl in lines:
        m = _GRUB_ERROR.search(gl.text)
        if m is not None and m.group(1) not in out:
            out.append(m.group(1))
    return out


def diagnose(tr: Transcript, kernel_started: bool, root_mounted: bool, timeout: float) -> str:
    """Why the guest did not reach userspace, in one sentence that names the stage."""
    lines = tr.lines
    texts = [gl.text for gl in lines]
    # the runner's `script` wrapper adds a first and a last line of its own: not the guest's
    last = next((t for t in reversed(texts) if t.strip() and not t.startswith(("Script started", "Script done"))), "")
    panic = next((t[t.index("Kernel panic"):] for t in texts if "Kernel panic" in t), None)
    if tr.result is None:
        return "the Xen host gave no result for this guest (dom0's runner did not finish; see the console log)"
    if not lines:
        return "the Xen guest did not start: the guest console stayed empty (xl create printed nothing)"
    if not kernel_started:
        errors = _grub_errors(lines)
        err = f" (the loader said: {'; '.join(errors)})" if errors else ""
        fail = next((t.split("PVBUILD-LOADER-FAIL", 1)[1].strip() for t in texts if "PVBUILD-LOADER-FAIL" in t), None)
        if fail and fail.startswith("menu.lst not found"):
            return f"{fail}{err}"
        if any("libxl: error" in t or "Parsing config" in t for t in texts) and not any(
                "PVBUILD-LOADER" in t for t in texts):
            xl = "; ".join(t for t in texts if "error" in t.lower())[:400]
            return f"the Xen guest could not be created: {xl or last}"
        if any("grub> " in t or t.strip() == "grub>" for t in texts):
            return f"no kernel loaded: the loader dropped to its GRUB shell{err}"
        if any("Failed to boot both default and fallback entries" in t for t in texts) or fail:
            return f"no kernel loaded: no menu.lst entry could be booted{err}"
        if tr.result == "timeout":
            return f"no kernel loaded within {timeout:.0f} s{err} (last console line: {last!r})"
        return f"no kernel loaded{err} (last console line: {last!r})"
    no_disk = not any(re.search(r"\bxvd[a-z]", t) for t in texts)
    disk_hint = (" — no Xen disk (xvd*) ever appeared in the guest: its initrd lacks xen-blkfront (or does not "
                 "load it)") if no_disk else ""
    if not root_mounted:
        alert = next((t[t.index("ALERT!"):].strip() for t in texts if "ALERT!" in t), None)
        vfs = next((t[t.index("VFS:"):].strip() for t in texts if "VFS: Unable to mount root" in t
                    or "VFS: Cannot open root device" in t), None)
        if tr.result == "root-stall":
            return (f"root not mounted: the initrd was still waiting for the root device "
                    f"{ROOT_STALL_SECONDS} s after it began{disk_hint}")
        if alert or any("Gave up waiting for root" in t for t in texts):
            return f"root not mounted: gave up waiting for the root device ({alert or 'no ALERT line'}){disk_hint}"
        if vfs:
            return f"root not mounted: {vfs}{disk_hint}"
        if any("(initramfs)" in t for t in texts):
            return f"root not mounted: the initrd dropped to its shell{disk_hint}"
        if panic:
            return f"root not mounted: {panic}{disk_hint}"
        if any("Waiting for root file system" in t for t in texts):
            return f"root not mounted: waiting for the root device when the watch ended ({tr.result}){disk_hint}"
        return f"root not mounted within {timeout:.0f} s ({tr.result}; last console line: {last!r})"
    no_init = next((t.strip() for t in texts if "doesn't have requested" in t or "No working init found" in t
                    or "No init found" in t), None)
    if no_init:
        return f"userspace not reached: the root filesystem has no init ({no_init})"
    if panic:
        return f"userspace not reached: {panic}"
    if tr.roots == 0:
        fss = "; ".join(tr.filesystems) or "no filesystem found"
        return ("userspace not proven: pvbuild found no root filesystem on the disk to put its probe in "
                f"({fss}); the probe needs an ext2/3/4, XFS or btrfs root (on the disk, a partition or an LVM "
                "logical volume) with /etc and an init")
    if tr.filesystems and all("systemd=no" in f for f in tr.filesystems if " root " in f):
        return ("userspace not proven: the root filesystem's init is not systemd, and pvbuild's probe is a "
                "systemd unit")
    if any("emergency mode" in t for t in texts):
        return "userspace not reached: the guest's systemd entered emergency mode (see the console log)"
    return f"userspace not reached within {timeout:.0f} s ({tr.result}; last console line: {last!r})"


def render_console(tr: Transcript) -> str:
    """The guest console log as saved next to the image: the runner's notes, then each line with its time."""
    head = [f"# pvbuild boot: {r}" for r in tr.runner]
    body = [f"[{gl.t:8.2f}] {gl.text}" for gl in tr.lines]
    return "\n".join(head + body) + "\n"
