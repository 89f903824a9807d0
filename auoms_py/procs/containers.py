"""Container ids (reference §3.10): the first 12 hex digits of a docker/containerd container id, or "".

Two sources, both facts about a process:
- its cgroup path (live: /proc/PID/cgroup), which names the container for docker, containerd/CRI, CRI-O and
  podman in cgroup v1 and v2 layouts, e.g. `0::/system.slice/docker-<64 hex>.scope`,
  `12:memory:/docker/<64 hex>`, `.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<64 hex>.scope`;
- the container shim that starts the container's first process (what AUOMS used, and all replay has):
  `containerd-shim -namespace moby -workdir /var/lib/containerd/.../moby/<64 hex> ...` (shim v1) or
  `containerd-shim-runc-v2 -namespace moby -id <64 hex> -address ...` (v2). The shim itself runs on the host;
  its descendants are in the container.
"""
from __future__ import annotations

import re

ID_LENGTH = 12
# a 64-hex path component, optionally with a runtime prefix (docker-, cri-containerd-, crio-, libpod-, ...) and
# a systemd .scope suffix
_CGROUP_ID = re.compile(r"(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")
_HEX_ID = re.compile(r"^[0-9a-f]{12,}$")


def from_cgroup(text: str) -> str:
    """The container id named by a /proc/PID/cgroup text, or "" (host processes)."""
    if "/" not in text:
        return ""
    found = ""
    for line in text.splitlines():
        # hierarchy-id:controllers:path; the path is everything after the second ':'
        path = line.split(":", 2)[-1]
        for match in _CGROUP_ID.finditer(path):
            found = match.group(1)  # the deepest id on the line
        if found:
            break
    return found[:ID_LENGTH]


def from_shim(exe: str | None, argv: list[str] | None) -> str:
    """For a containerd shim, the id of the container it runs (its descendants' id); "" otherwise."""
    if not exe or not argv:
        return ""
    base = exe.rpartition("/")[2]
    if not base.startswith("containerd-shim"):
        return ""
    for i, arg in enumerate(argv[:-1]):
        value = argv[i + 1]
        if arg == "-id" and _HEX_ID.match(value):
            return value[:ID_LENGTH]
        if arg == "-workdir":
            last = value.rstrip("/").rpartition("/")[2]
            if _HEX_ID.match(last):
                return last[:ID_LENGTH]
    return ""


def split_cmdline(cmdline: str | None) -> list[str]:
    """A rough argv from a cmdline text (enough for the shim's plain hex/path arguments)."""
    return cmdline.split() if cmdline else []
