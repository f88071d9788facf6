"""`pvbuild boot`: boot an image for real, as a Xen PV guest through a menu.lst-reading GRUB 2 loader, under QEMU.

host.py builds and caches the Xen test host; vm.py runs QEMU (cold boot, saved-state restore, hot-plug);
console.py reads the guest console into a report; run.py ties them together.
"""
