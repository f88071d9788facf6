"""Filesystem readers with PV-GRUB's own limits (not Linux's), plus a blkid-like identity probe."""
