"""GRUB 0.97's menu.lst lexer and parser, exactly as PV-GRUB runs them.

- `lines()` is stage2.c `get_line_from_config`: CR dropped, TAB -> space, leading blanks and blank lines
  skipped, `#` a comment only as the first non-blank character, backslash-newline joins lines, lines capped
  at 1500 characters (NEW_HEAPSIZE), the rest of an over-long line silently dropped.
- `parse()` is the configuration loop of stage2.c `cmain`: before the first `title` only commands flagged
  BUILTIN_MENU run (their errors discarded); after it every known command is copied into the entry; unknown
  commands are dropped everywhere; a title with no command after it is dropped and later entries renumber.
- `find_command()` is cmdline.c `find_command` over the PV build's builtin table (builtins.c with
  SUPPORT_NETBOOT, SUPPORT_GRAPHICS, SUPPORT_SERIAL, __MINIOS__; without GRUB_UTIL and MD5 passwords).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Flag, auto

from pvbuild.pvgrub.disk import parse_maxint

NEW_HEAPSIZE = 1500  # shared.h: the longest line GRUB keeps
MAX_FALLBACK_ENTRIES = 8  # shared.h
MAX_CONFIG_BYTES = 1024 * 1024  # our bound on a menu file (GRUB's config area is far smaller)


class B(Flag):
    """builtins.c flags."""

    CMDLINE = auto()
    MENU = auto()
    TITLE = auto()
    SCRIPT = auto()
    NO_ECHO = auto()


_C, _M = B.CMDLINE, B.MENU
# The PV build's builtin_table (builtins.c, with the #ifdefs of stubdom/grub/Makefile resolved). Commands
# removed by patch 99minios (serial, setkey, setup, install, uppermem, displaymem, displayapm, embed,
# impsprobe, ioprobe, testload, testvbe, vbeprobe) and the GRUB_UTIL-only ones (device, dump, quit) are
# absent, so they are unknown commands here, as in PV-GRUB.
BUILTINS: dict[str, B] = {
    "background": _C | _M, "blocklist": _C, "boot": _C, "bootp": _C | _M, "border": _C | _M, "cat": _C,
    "chainloader": _C, "clear": _C, "cmp": _C, "color": _C | _M, "configfile": _C, "debug": _C,
    "default": _M, "dhcp": _C | _M, "fallback": _M, "find": _C, "foreground": _C | _M, "fstest": _C,
    "geometry": _C, "halt": _C, "help": _C, "hiddenmenu": _M, "hide": _C | _M, "ifconfig": _C | _M,
    "initrd": _C, "kernel": _C, "lock": _C, "makeactive": _C, "map": _C, "module": _C,
    "modulenounzip": _C, "pager": _C | _M, "partnew": _C | _M, "parttype": _C | _M,
    "password": _C | _M | B.NO_ECHO, "pause": _C | B.NO_ECHO, "print": _C | _M | B.NO_ECHO,
    "rarp": _C | _M, "read": _C, "reboot": _C, "root": _C, "rootnoverify": _C, "savedefault": _C,
    "shade": _C | _M, "splashimage": _C | _M, "terminal": _C | _M, "terminfo": _C | _M,
    "tftpserver": _C | _M, "timeout": _M, "title": B.TITLE, "unhide": _C | _M, "viewport": _C | _M,
}
# Commands that people put in menu.lst for other GRUBs and that PV-GRUB does not know.
REMOVED_IN_PV = frozenset({
    "serial", "setkey", "setup", "install", "uppermem", "displaymem", "displayapm", "embed", "impsprobe",
    "ioprobe", "testload", "testvbe", "vbeprobe", "device", "dump", "quit", "md5crypt",
})


def lines(data: bytes) -> Iterator[tuple[int, str]]:
    """stage2.c get_line_from_config: yields (line number where the logical line started, text).

    Text is decoded as Latin-1 so every byte maps to one character, as GRUB treats them; a NUL byte ends
    the C string, so what follows it on that line is invisible to GRUB.
    """
    data = data[:MAX_CONFIG_BYTES]
    buf: list[str] = []
    literal = comment = False
    lineno = 1
    start_line = 1
    for byte in data:
        c = chr(byte)
        if c == "\r":
            continue
        if c == "\t":
            c = " "
        if literal:
            if c == "\n":
                c = " "
                if buf:
                    buf.pop()
            literal = False
        if c == "\\" and not literal:
            literal = True
        if comment:
            if c == "\n":
                comment = False
        elif not buf:
            if c == "#":
                comment = True
            elif c not in (" ", "\n"):
                start_line = lineno
                buf.append(c)
        else:
            if c == "\n":
                text = "".join(buf)
                yield start_line, text.split("\0", 1)[0]
                buf = []
                lineno += 1
                continue
            if len(buf) < NEW_HEAPSIZE:
                buf.append(c)
        if byte == 0x0A:
            lineno += 1
    if buf:
        yield start_line, "".join(buf).split("\0", 1)[0]


def command_word(line: str) -> str:
    """The command name: up to the first space, TAB or '=' (cmdline.c find_command)."""
    end = len(line)
    for i, ch in enumerate(line):
        if ch in " \t=":
            end = i
            break
    return line[:end]


def find_command(line: str) -> B | None:
    return BUILTINS.get(command_word(line))


def skip_to(after_equal: bool, text: str) -> str:
    """cmdline.c skip_to: skip the current word, then blanks (and '=' when `after_equal`)."""
    i = 0
    n = len(text)
    while i < n and text[i] not in " \t" and not (after_equal and text[i] == "="):
        i += 1
    while i < n and (text[i] in " \t" or (after_equal and text[i] == "=")):
        i += 1
    return text[i:]


@dataclass
class Entry:
    """One menu entry: its title and the command lines GRUB copied into it, with their file line numbers."""

    title: str
    commands: list[tuple[int, str]] = field(default_factory=list)
    line: int = 0


@dataclass
class MenuState:
    """The variables `init_config` resets and the global commands set (builtins.c)."""

    default_entry: int = 0
    fallback_entries: list[int] = field(default_factory=lambda: [-1] * MAX_FALLBACK_ENTRIES)
    fallback_entryno: int = -1
    timeout: int = -1
    hidden: bool = False
    password: str | None = None

    def fallbacks(self) -> list[int]:
        """The fallback list from the current cursor on (what a failure will try, in order)."""
        if self.fallback_entryno < 0:
            return []
        out = []
        for i in range(self.fallback_entryno, MAX_FALLBACK_ENTRIES):
            if self.fallback_entries[i] < 0:
                break
            out.append(self.fallback_entries[i])
        return out


@dataclass
class ParsedMenu:
    entries: list[Entry]
    state: MenuState
    unknown: list[tuple[int, str]] = field(default_factory=list)  # (line, command word)
    ignored_globals: list[tuple[int, str]] = field(default_factory=list)  # entry commands before any title
    dropped_titles: list[tuple[int, str]] = field(default_factory=list)


def _default(state: MenuState, arg: str, saved_entryno: int) -> None:
    """builtins.c default_func: exactly "saved" takes the `default` file's number; else a number or nothing."""
    if arg == "saved":
        state.default_entry = saved_entryno
        return
    parsed = parse_maxint(arg, 0)
    if parsed is not None:
        state.default_entry = parsed[0]


def _fallback(state: MenuState, arg: str) -> None:
    """builtins.c fallback_func, including its quirks.

    A value already in the list is skipped without advancing past the blanks that follow it, so a duplicate
    at the end of the line is dropped quietly while a duplicate followed by more values makes the next parse
    fail and aborts the command (leaving `fallback_entryno` as it was: no fallback on a first `fallback`).
    Values written before an abort stay in the array, as in C.
    """
    i = 0
    pos = 0
    while pos < len(arg):
        parsed = parse_maxint(arg, pos)
        if parsed is None:
            return
        entry, pos = parsed
        if entry in state.fallback_entries[:i]:
            continue
        state.fallback_entries[i] = entry
        i += 1
        if i == MAX_FALLBACK_ENTRIES:
            break
        pos = len(arg) - len(skip_to(False, arg[pos:]))
    if i < MAX_FALLBACK_ENTRIES:
        state.fallback_entries[i] = -1
    state.fallback_entryno = -1 if i == 0 else 0


def _timeout(state: MenuState, arg: str) -> None:
    parsed = parse_maxint(arg, 0)
    if parsed is not None:
        state.timeout = parsed[0]


def run_global(state: MenuState, word: str, arg: str, saved_entryno: int) -> None:
    """A BUILTIN_MENU command before the first title; errors are discarded as cmain does."""
    if word == "default":
        _default(state, arg, saved_entryno)
    elif word == "fallback":
        _fallback(state, arg)
    elif word == "timeout":
        _timeout(state, arg)
    elif word == "hiddenmenu":
        state.hidden = True
    elif word == "password":
        # password_func with BUILTIN_MENU: store it (options "--md5" are unknown without MD5 support).
        text = arg
        if text.startswith("--"):
            text = skip_to(False, text)
        state.password = text


def parse(data: bytes, saved_entryno: int = 0) -> ParsedMenu:
    """stage2.c cmain's configuration loop over one menu file."""
    state = MenuState()
    entries: list[Entry] = []
    unknown: list[tuple[int, str]] = []
    ignored: list[tuple[int, str]] = []
    dropped: list[tuple[int, str]] = []
    current: Entry | None = None
    for lineno, text in lines(data):
        flags = find_command(text)
        if flags is None:
            unknown.append((lineno, command_word(text)))
            continue
        if B.TITLE in flags:
            if current is not None and not current.commands:
                dropped.append((current.line, current.title))
            elif current is not None:
                entries.append(current)
            current = Entry(skip_to(True, text), line=lineno)
        elif current is None:
            if B.MENU in flags:
                run_global(state, command_word(text), skip_to(True, text), saved_entryno)
            else:
                ignored.append((lineno, command_word(text)))
        else:
            current.commands.append((lineno, text))
    if current is not None:
        if current.commands:
            entries.append(current)
        else:
            dropped.append((current.line, current.title))
    _settle(state, len(entries))
    return ParsedMenu(entries, state, unknown, ignored, dropped)


class FallbackLoop(Exception):
    """cmain's fallback clean-up never ends: a full list (8 values) whose values are all past the last entry."""


def _settle(state: MenuState, num_entries: int) -> None:
    """End of cmain's loop: drop fallbacks past the last entry, then fix an out-of-range default.

    A literal port of the C loop, memmove included: removing from a full list duplicates its last value,
    so a full list whose values are all out of range makes GRUB loop forever before the menu appears
    (raised as FallbackLoop). A default past the end takes the first fallback (and the fallback cursor
    moves on), else 0.
    """
    fb = state.fallback_entries
    if state.fallback_entryno >= 0:
        i = 0
        guard = 0
        while i < MAX_FALLBACK_ENTRIES:
            guard += 1
            if guard > 64 * MAX_FALLBACK_ENTRIES:
                raise FallbackLoop
            if fb[i] < 0:
                break
            if fb[i] >= num_entries:
                fb[i:MAX_FALLBACK_ENTRIES - 1] = fb[i + 1:MAX_FALLBACK_ENTRIES]
                i -= 1
            i += 1
        if fb[0] < 0:
            state.fallback_entryno = -1
    if state.default_entry >= num_entries:
        if state.fallback_entryno >= 0:
            state.default_entry = fb[0]
            state.fallback_entryno += 1
            if state.fallback_entryno >= MAX_FALLBACK_ENTRIES or fb[state.fallback_entryno] < 0:
                state.fallback_entryno = -1
        else:
            state.default_entry = 0


def parse_default_file(data: bytes) -> int:
    """stage2.c cmain: the `default` file next to the menu: <= 10 bytes, the number after ':' if any.

    Reads 10 bytes, keeps 9 (buf[9] = 0), and a number that does not parse leaves 0.
    """
    text = data[:10][:9].decode("latin-1").split("\0", 1)[0]
    if ":" in text:
        text = text[text.index(":") + 1:]
    parsed = parse_maxint(text, 0)
    return parsed[0] if parsed else 0
