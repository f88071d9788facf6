"""`pvbuild instance upgrade-pvgrub`: move a running PV instance to the latest PV-GRUB AKI.

The Japanese field guide's procedure: the kernel attribute can only change while the instance is stopped, so
stop it, wait until it is stopped, set the kernel attribute to the latest PV-GRUB AKI of the same architecture
and variant, start it again (only if it was running), wait until it runs. `dry_run` only says what would be done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pvbuild.aws import aki as aki_mod
from pvbuild.errors import UsageError


class InstanceError(UsageError):
    """The instance cannot be upgraded as asked (exit 2)."""


@dataclass(frozen=True)
class UpgradePlan:
    instance_id: str
    region: str
    state: str
    architecture: str
    current_kernel: str | None
    current_name: str | None
    target: aki_mod.Aki
    steps: tuple[str, ...]

    @property
    def needed(self) -> bool:
        return self.current_kernel != self.target.aki_id

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "region": self.region, "state": self.state,
                "architecture": self.architecture, "current_kernel": self.current_kernel,
                "current_name": self.current_name, "target_kernel": self.target.aki_id,
                "target_name": self.target.name, "target_source": self.target.source, "needed": self.needed,
                "steps": list(self.steps)}


def _kernel_name(ec2: Any, kernel_id: str) -> str | None:
    row = aki_mod.table_by_id(kernel_id)
    try:
        images = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [kernel_id]}]).get("Images", [])
    except Exception:  # a lookup failure falls back to the table; the plan says which name it used
        images = []
    if images:
        name = images[0].get("Name") or images[0].get("ImageLocation") or ""
        return str(name).rsplit("/", 1)[-1]
    return row.name if row else None


def plan_upgrade(ec2: Any, instance_id: str, region: str, *, variant: str | None = None,
                 version: str | None = None, live: bool = True) -> UpgradePlan:
    """What upgrading `instance_id` would do; raises InstanceError for instances PV-GRUB does not boot."""
    from botocore.exceptions import ClientError

    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id]).get("Reservations", [])
    except ClientError as e:
        err = e.response.get("Error", {})
        raise InstanceError(f"{instance_id} in {region}: {err.get('Code')}: {err.get('Message')}") from e
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise InstanceError(f"instance {instance_id} not found in {region}")
    inst = instances[0]
    state = inst.get("State", {}).get("Name", "unknown")
    if state in ("terminated", "shutting-down"):
        raise InstanceError(f"{instance_id} is {state}: nothing to upgrade")
    if inst.get("VirtualizationType", "paravirtual") != "paravirtual":
        raise InstanceError(f"{instance_id} is {inst.get('VirtualizationType')}: only paravirtual instances boot "
                            "through a PV-GRUB AKI")
    arch = inst.get("Architecture") or "x86_64"
    kernel = inst.get("KernelId") or None
    if kernel in ("None", ""):
        kernel = None
    name = _kernel_name(ec2, kernel) if kernel else None
    parsed = aki_mod.parse_name(name) if name else None
    if kernel and name and not name.startswith("pv-grub"):
        raise InstanceError(f"{instance_id} boots kernel {kernel} ({name}), not a PV-GRUB AKI: its own kernel "
                            "would be replaced by a boot loader that needs /boot/grub/menu.lst in the image — "
                            "convert the image first (seeds: \"update an existing AMI to use a user-provided "
                            "kernel\")")
    want_variant = variant or (parsed[0] if parsed else "hd0")
    if parsed is not None and parsed[0] != want_variant:
        raise InstanceError(f"{instance_id} boots the {parsed[0]} variant ({name}); --variant {want_variant} would "
                            "look for menu.lst elsewhere on its disk — keep the variant of the image's layout")
    if parsed is not None and parsed[2] != arch:
        raise InstanceError(f"{instance_id} is {arch} but boots {name}: fix the kernel by hand first")
    target = aki_mod.select(region, arch, want_variant, version, live=live, ec2_client=ec2)
    steps: list[str] = []
    if kernel == target.aki_id:
        steps.append(f"nothing to do: {instance_id} already boots {target.aki_id} ({target.name})")
    else:
        running = state in ("running", "pending")
        if running:
            steps += [f"stop {instance_id}", f"wait until {instance_id} is stopped"]
        elif state == "stopping":
            steps.append(f"wait until {instance_id} is stopped")
        steps.append(f"set the kernel of {instance_id} to {target.aki_id} ({target.name}), was "
                     f"{kernel or 'none'}{f' ({name})' if name else ''}")
        if running:
            steps += [f"start {instance_id}", f"wait until {instance_id} is running"]
        else:
            steps.append(f"leave {instance_id} {'stopped' if state == 'stopping' else state}, as it was")
    return UpgradePlan(instance_id, region, state, arch, kernel, name, target, tuple(steps))


def upgrade(ec2: Any, plan: UpgradePlan, *, say: Callable[[str], None] = lambda _m: None,
            wait_delay: int = 15, wait_attempts: int = 80) -> None:
    """Carry out `plan`: stop, wait, modify the kernel attribute, start, wait."""
    if not plan.needed:
        say(plan.steps[0])
        return
    iid = plan.instance_id
    cfg = {"Delay": wait_delay, "MaxAttempts": wait_attempts}
    was_running = plan.state in ("running", "pending")
    if was_running:
        say(f"stopping {iid}")
        ec2.stop_instances(InstanceIds=[iid])
    if was_running or plan.state == "stopping":
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=cfg)
    say(f"setting the kernel of {iid} to {plan.target.aki_id} ({plan.target.name})")
    ec2.modify_instance_attribute(InstanceId=iid, Kernel={"Value": plan.target.aki_id})
    if was_running:
        say(f"starting {iid}")
        ec2.start_instances(InstanceIds=[iid])
        ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=cfg)
