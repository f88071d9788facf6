"""KVM or TCG: whether this machine's KVM can run the Xen test host, decided once by a quick probe, cached.

A /dev/kvm is not enough: Xen is a hypervisor, and a KVM without nested virtualisation (or a paravirtual one such
as kvm_pvm) fails on Xen or on dom0's first userspace instructions. So the probe boots the real host under KVM and
waits for dom0's runner; KVM reaches it in seconds when it works, so a short deadline decides. The answer is
cached per host, QEMU build and host kernel (`uname -r`); $PVBUILD_BOOT_ACCEL (tcg|kvm) overrides it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pvbuild.boot import vm as vm_mod
from pvbuild.boot.host import XenHost
from pvbuild.build.run import Log
from pvbuild.build.workspace import file_lock, work_dir
from pvbuild.errors import UsageError

PROBE_TIMEOUT_S = 60.0
KVM_FAILURES = ("KVM internal error", "emulation failure", "kvm run failed", "failed to initialize kvm",
                "Could not access KVM")


def _cache_file(host: XenHost) -> Path:
    return host.folder / f"accel-{vm_mod.qemu_key()}-{os.uname().release}.json"


def decide_accel(host: XenHost, log: Log, *, force: str | None = None) -> tuple[str, str]:
    """("kvm"|"tcg", why)."""
    force = force or os.environ.get("PVBUILD_BOOT_ACCEL") or None
    if force is not None:
        if force not in ("kvm", "tcg"):
            raise UsageError(f"accelerator {force!r}: use kvm or tcg")
        return force, "asked for"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    path = _cache_file(host)
    with file_lock(host.folder / "accel.lock"):
        if path.is_file():
            doc = json.loads(path.read_text())
            return str(doc["accel"]), f"{doc['reason']} (probed earlier)"
        with log.stage("accelerator probe (Xen under KVM?)"):
            ok, reason = probe_kvm(host, log)
        doc = {"accel": "kvm" if ok else "tcg", "reason": reason, "probed": time.time()}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
    return str(doc["accel"]), reason


def probe_kvm(host: XenHost, log: Log) -> tuple[bool, str]:
    """Boot the host under KVM until dom0's runner says READY; (works, why)."""
    with work_dir(prefix="pvbuild-kvmprobe-", log=log) as d:
        argv, disk = vm_mod.cold_boot(host, "kvm", d, log)
        try:
            with vm_mod.start(argv, d, disk, log=log) as vm:
                t0 = time.monotonic()
                while time.monotonic() - t0 < PROBE_TIMEOUT_S:
                    if any(vm_mod.READY in line for line in vm.serial.poll()):
                        return True, f"KVM ran Xen and dom0 to userspace in {time.monotonic() - t0:.0f} s"
                    err = vm.stderr_tail()
                    bad = next((k for k in KVM_FAILURES if k.lower() in err.lower()), None)
                    if bad is not None or not vm.alive():
                        lines = err.splitlines()
                        why = next((ln for ln in lines if bad and bad.lower() in ln.lower()),
                                   lines[-1] if lines else "QEMU exited")
                        return False, f"KVM cannot run Xen here ({why.strip()})"
                    time.sleep(0.5)
                return False, f"KVM did not bring Xen's dom0 up within {PROBE_TIMEOUT_S:.0f} s"
        except vm_mod.VmError as e:
            return False, f"KVM cannot run Xen here ({e})"
