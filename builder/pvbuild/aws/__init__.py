"""Shipping to AWS: PV-GRUB AKI selection and AMI checks."""
