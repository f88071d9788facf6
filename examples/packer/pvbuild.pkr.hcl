# Packer (HCL2) -> pvbuild: the `file` builder stands for any builder that leaves a disk image (qemu, a cloud
# image download, ...). Its artifact goes through the post-processor chain: `manifest` records it in
# packer-manifest.json, then `shell-local` runs `pvbuild packer`, which picks this build of this run from the
# manifest ($PACKER_RUN_UUID, $PACKER_BUILD_NAME), makes the image PV-GRUB-ready (menu.lst, ext4 64bit off, ...),
# checks it, registers it when asked, and appends its own artifacts to the manifest.
#
#   packer build -var source_image=debian.raw examples/packer/pvbuild.pkr.hcl
#   packer build -var source_image=debian.raw \
#     -var 'pvbuild_args=--register --region us-east-1 --name debian-pv' examples/packer/pvbuild.pkr.hcl

variable "source_image" {
  type        = string
  description = "the disk image to start from (raw or qcow2)"
}

variable "output_dir" {
  type    = string
  default = "output-disk"
}

variable "pvbuild" {
  type        = string
  default     = "pvbuild"
  description = "how to run pvbuild (e.g. /path/to/.venv/bin/pvbuild)"
}

variable "pvbuild_args" {
  type        = string
  default     = ""
  description = "more `pvbuild packer` flags: menu (--timeout 3), profile (--pvgrub 1.03), --register ..."
}

source "file" "disk" {
  source = var.source_image
  target = "${var.output_dir}/disk.raw"
}

build {
  sources = ["source.file.disk"]

  # One `post-processors` block is one chain: shell-local runs after the manifest has been written.
  post-processors {
    post-processor "manifest" {
      output = "packer-manifest.json"
    }
    post-processor "shell-local" {
      inline = ["${var.pvbuild} packer --manifest packer-manifest.json ${var.pvbuild_args}"]
    }
  }
}
