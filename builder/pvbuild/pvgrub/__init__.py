"""The PV-GRUB emulator core.

Reads a raw disk image exactly as Amazon's PV-GRUB (GNU GRUB 0.97 with Xen's stubdom patches, on mini-os)
would, decides which menu entry boots, and then checks what the loaded kernel needs to come up.
It imports nothing from the build or AWS stages so that it stays usable on any image from anywhere.
"""
