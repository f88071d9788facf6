"""menu.lst grammar: GRUB 0.97's lexer (stage2.c get_line_from_config) and parser (stage2.c cmain).

Line numbers cite the reference copy in shared/reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/.
"""

from __future__ import annotations

import pytest

from pvbuild.pvgrub import menu
from pvbuild.pvgrub.disk import parse_maxint


def texts(data: bytes) -> list[str]:
    return [t for _, t in menu.lines(data)]


def test_cr_dropped_tab_to_space_leading_blanks_and_blank_lines_skipped() -> None:
    """PVGRUB.md §2; stage2.c:823-828 (skip \\r, TAB -> space), :851-857 (leading blanks, empty lines)."""
    assert texts(b"  \ttimeout\t5\r\n\n\n   \n\tdefault 1\n") == ["timeout 5", "default 1"]


def test_hash_is_comment_only_as_first_non_blank() -> None:
    """PVGRUB.md §2; stage2.c:845-853: `#` starts a comment only at pos 0; later it is text."""
    got = texts(b"# comment\n   # indented comment\nkernel /vmlinuz root=/dev/xvda1 #notacomment\n")
    assert got == ["kernel /vmlinuz root=/dev/xvda1 #notacomment"]


def test_backslash_newline_joins_lines() -> None:
    """PVGRUB.md §2; stage2.c:830-843: a backslash before a newline becomes a space."""
    assert texts(b"kernel /vmlinuz \\\nroot=/dev/xvda1\n") == ["kernel /vmlinuz  root=/dev/xvda1"]


def test_double_backslash_still_joins() -> None:
    """stage2.c:840-843: the second backslash re-arms `literal`, so `\\\\\\n` also joins."""
    assert texts(b"a \\\\\nb\n") == ["a \\ b"]


def test_backslash_newline_at_line_start_is_dropped() -> None:
    """stage2.c:836-838 + 851: the joined space lands at position 0 and is skipped as a leading blank."""
    assert texts(b"\\\ntimeout 1\n") == ["timeout 1"]


def test_lines_cap_at_1500_characters() -> None:
    """PVGRUB.md §2; shared.h NEW_HEAPSIZE 1500, stage2.c:861: characters past the cap are dropped."""
    long = b"kernel /vmlinuz " + b"x" * 3000 + b"\ntimeout 0\n"
    got = texts(long)
    assert len(got[0]) == 1500
    assert got[1] == "timeout 0"


def test_last_line_without_newline_is_kept() -> None:
    """stage2.c:808-813: EOF ends the last line like a newline."""
    assert texts(b"timeout 0\ntitle x") == ["timeout 0", "title x"]


def test_nul_byte_ends_the_c_string() -> None:
    """The line is a C string: GRUB sees nothing after a NUL byte."""
    assert texts(b"timeout 3\x00garbage\n") == ["timeout 3"]


def test_command_word_ends_at_space_tab_or_equals() -> None:
    """PVGRUB.md §2; cmdline.c:71-73 find_command; skip_to(1, ...) cmdline.c:36-44 skips `=` too."""
    assert menu.command_word("default=0") == "default"
    assert menu.skip_to(True, "default=0") == "0"
    assert menu.skip_to(True, "timeout = 5") == "5"
    assert menu.skip_to(True, "kernel=/vmlinuz ro") == "/vmlinuz ro"
    assert menu.skip_to(False, "/vmlinuz  root=/dev/xvda1") == "root=/dev/xvda1"


def test_commands_are_case_sensitive() -> None:
    """cmdline.c:78 grub_strcmp: `Title` and `KERNEL` are unknown commands."""
    assert menu.find_command("Title x") is None
    assert menu.find_command("KERNEL /vmlinuz") is None
    assert menu.find_command("title x") is not None


@pytest.mark.parametrize("word", sorted(menu.REMOVED_IN_PV))
def test_commands_removed_by_99minios_are_unknown(word: str) -> None:
    """PVGRUB.md §2; builtins.c builtin_table #ifndef __MINIOS__ and GRUB_UTIL-only entries."""
    assert menu.find_command(word + " x") is None


def test_unknown_commands_dropped_globally_and_in_entries() -> None:
    """PVGRUB.md §2; stage2.c:983-986: an unknown command is skipped before any state logic."""
    p = menu.parse(b"timeout 0\nserial --unit=0\ntitle a\nsetkey x y\nroot (hd0)\nfoo bar\n")
    assert [c for _, c in p.entries[0].commands] == ["root (hd0)"]
    assert [w for _, w in p.unknown] == ["serial", "setkey", "foo"]


def test_entry_commands_before_first_title_are_ignored() -> None:
    """PVGRUB.md §2; stage2.c:1012-1023: state 0 runs only BUILTIN_MENU commands."""
    p = menu.parse(b"root (hd0)\nkernel /vmlinuz\nconfigfile /x\ntimeout 0\ntitle a\nroot (hd0)\n")
    assert [w for _, w in p.ignored_globals] == ["root", "kernel", "configfile"]
    assert p.state.timeout == 0
    assert len(p.entries) == 1


def test_title_without_known_command_is_dropped_and_entries_renumber() -> None:
    """PVGRUB.md §2; stage2.c:990-1003 and 1035-1043: a title with nothing after it is overwritten."""
    p = menu.parse(b"title empty\nfoo\ntitle one\nroot (hd0)\ntitle two\ntitle three\nkernel /k\ntitle last\n")
    assert [e.title for e in p.entries] == ["one", "three"]
    assert [t for _, t in p.dropped_titles] == ["empty", "two", "last"]


def test_title_text_after_equals_and_empty_title_kept() -> None:
    """stage2.c:1006 skip_to(1, cmdline): `title=x` gives x; an empty title with commands is an entry."""
    p = menu.parse(b"title=Debian GNU/Linux\nroot (hd0)\ntitle\nroot (hd0)\n")
    assert [e.title for e in p.entries] == ["Debian GNU/Linux", ""]


def test_defaults_when_menu_sets_nothing() -> None:
    """PVGRUB.md §3; builtins.c:107-114 init_config: default 0, timeout -1, no fallback."""
    p = menu.parse(b"title a\nroot (hd0)\n")
    assert (p.state.default_entry, p.state.timeout, p.state.fallback_entryno) == (0, -1, -1)


def test_default_decimal_hex_and_non_number() -> None:
    """PVGRUB.md §3; builtins.c default_func + char_io.c:911 safe_parse_maxint (0x-hex, stops at junk)."""
    body = b"title a\nroot (hd0)\ntitle b\nroot (hd0)\ntitle c\nroot (hd0)\n"
    assert menu.parse(b"default 0x2\n" + body).state.default_entry == 2
    assert menu.parse(b"default 1foo\n" + body).state.default_entry == 1
    assert menu.parse(b"default 1\ndefault foo\n" + body).state.default_entry == 1
    assert menu.parse(b"default=2\n" + body).state.default_entry == 2


def test_default_saved_exact_reads_default_file_value() -> None:
    """PVGRUB.md §3; builtins.c default_func: only the exact word "saved" (trailing blanks break it)."""
    body = b"title a\nroot (hd0)\ntitle b\nroot (hd0)\n"
    assert menu.parse(b"default saved\n" + body, saved_entryno=1).state.default_entry == 1
    assert menu.parse(b"default saved \n" + body, saved_entryno=1).state.default_entry == 0


@pytest.mark.parametrize(("content", "want"), [
    (b"1\n", 1), (b"0x1", 1), (b"saved:1\n", 1), (b"junk", 0), (b"", 0), (b"123456789012", 0),
    (b"12345678:3", 0),
])
def test_default_file_parsing(content: bytes, want: int) -> None:
    """PVGRUB.md §3; stage2.c:917-936: <= 10 bytes read, buf[9] = 0, number after ':' if any, bad -> 0.

    "12345678:3": the ':' is at byte 8 and the 3 at byte 9, which buf[9] = 0 cuts off -> parse fails -> 0.
    "123456789012": 9 digits kept, parses to 123456789 -- but the entry check happens later, so we return it.
    """
    got = menu.parse_default_file(content)
    if content == b"123456789012":
        assert got == 123456789
    else:
        assert got == want


def three_entries(head: bytes) -> menu.ParsedMenu:
    return menu.parse(head + b"title a\nroot (hd0)\ntitle b\nroot (hd0)\ntitle c\nroot (hd0)\n")


def test_fallback_list() -> None:
    """PVGRUB.md §3; builtins.c fallback_func."""
    assert three_entries(b"fallback 1 2\n").state.fallbacks() == [1, 2]


def test_fallback_duplicate_at_end_dropped_quietly() -> None:
    """PVGRUB.md §3: `fallback 1 1` = [1] (the duplicate is skipped and the loop ends)."""
    assert three_entries(b"fallback 1 1\n").state.fallbacks() == [1]


def test_fallback_duplicate_followed_by_value_aborts_line() -> None:
    """PVGRUB.md §3: `fallback 1 1 0` = no fallback (the `continue` does not skip the blank; the next parse
    fails and fallback_func returns before setting fallback_entryno)."""
    assert three_entries(b"fallback 1 1 0\n").state.fallbacks() == []


def test_fallback_values_past_entry_count_removed() -> None:
    """PVGRUB.md §3; stage2.c:1059-1075: entries >= num_entries are removed from the list."""
    assert three_entries(b"fallback 7 1 9 2\n").state.fallbacks() == [1, 2]
    assert three_entries(b"fallback 5\n").state.fallbacks() == []


def test_fallback_caps_at_eight() -> None:
    """shared.h MAX_FALLBACK_ENTRIES 8."""
    body = b"".join(b"title t%d\nroot (hd0)\n" % i for i in range(10))
    p = menu.parse(b"fallback 1 2 3 4 5 6 7 8 9\n" + body)
    assert p.state.fallbacks() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_full_fallback_list_out_of_range_loops_forever() -> None:
    """stage2.c:1061-1071: the memmove of a full list keeps its last value; all out of range -> endless loop."""
    with pytest.raises(menu.FallbackLoop):
        menu.parse(b"fallback 10 11 12 13 14 15 16 17\ntitle a\nroot (hd0)\n")


def test_default_past_end_takes_first_fallback_and_advances() -> None:
    """PVGRUB.md §3; stage2.c:1077-1092."""
    p = three_entries(b"default 9\nfallback 2 1\n")
    assert p.state.default_entry == 2
    assert p.state.fallbacks() == [1]


def test_default_past_end_without_fallback_is_zero() -> None:
    """stage2.c:1088-1090."""
    assert three_entries(b"default 9\n").state.default_entry == 0


def test_timeout_and_hiddenmenu() -> None:
    """PVGRUB.md §3; builtins.c timeout_func/hiddenmenu_func."""
    p = three_entries(b"timeout=0\nhiddenmenu\n")
    assert p.state.timeout == 0
    assert p.state.hidden


def test_global_commands_inside_entry_are_copied_for_error_27() -> None:
    """PVGRUB.md §3: after `title` every known command belongs to the entry (stage2.c:1024-1031); the ones
    without BUILTIN_CMDLINE fail there with Error 27 (cmdline.c run_script)."""
    p = menu.parse(b"title a\ntimeout 5\nroot (hd0)\n")
    assert [c for _, c in p.entries[0].commands] == ["timeout 5", "root (hd0)"]
    assert p.state.timeout == -1
    flags = menu.find_command("timeout 5")
    assert flags is not None and menu.B.CMDLINE not in flags


def test_safe_parse_maxint_overflow() -> None:
    """char_io.c:943-947: overflow of MAXINT is an error."""
    assert parse_maxint("2147483647", 0) == (2147483647, 10)
    assert parse_maxint("2147483648", 0) is None
    assert parse_maxint("0xg", 0) is None
