"""pvbuild: build, prove and ship Linux disk images that boot through PV-GRUB."""

__version__ = "0.1.0"
