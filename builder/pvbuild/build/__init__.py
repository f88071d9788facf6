"""The build stage: Plan -> rootfs (mmdebstrap, cached) -> elements in a chroot -> disk image -> emulator check.

`pvbuild.build.pipeline.build(plan)` is the entry point; the modules are its steps (see DESIGN.md, "Build").
"""
