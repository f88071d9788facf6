"""Distribution profiles: packages, kernel, initrd tool and mirror for each distro family."""
