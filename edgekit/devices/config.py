"""Devices as configuration: `devices.toml` in the user's config dir, overridden by a project `devices.toml`.

Every field comes from a file or a flag someone typed, so each one is checked before use: a name is
one safe token, a URL is exactly `ssh://[user@]host[:port]`, paths hold no whitespace or quotes (they
travel inside `ssh -o` options), nothing starts with `-` (it would become an ssh option). Remote
commands are argv lists quoted with `shlex.quote` anyway; the checks keep error messages honest.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from edgekit.artifact import write_text_atomic
from edgekit.errors import BadInputError

CONFIG_ENV = "EDGEKIT_CONFIG_DIR"
DEVICES_FILE = "devices.toml"
DEFAULT_PYTHON = "python3"
DEFAULT_WORKDIR = ".edgekit"  # relative: remote commands start in the login's home directory

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_REMOTE_PATH = re.compile(r"[A-Za-z0-9_./+~-]{1,255}")
_TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: Any, *, source: str = "NAME") -> str:
    """A device name: one token of letters, digits, `_` and `-` (it names a TOML table and appears in logs)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadInputError(f"device name {name!r} is not one safe token", path=source,
                            hint="use letters, digits, '_' and '-', starting with a letter or digit (max 64)")
    return name


@dataclass(frozen=True)
class SshUrl:
    """`ssh://[user@]host[:port]`, parsed strictly."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}"


def parse_url(text: Any, *, source: str = "--url") -> SshUrl:
    """`ssh://user@host:port` (user and port optional; a host may be an alias from ~/.ssh/config)."""
    hint = "expected ssh://user@host[:port], e.g. ssh://pi@192.168.1.20:22"
    if not isinstance(text, str) or not text.isprintable() or any(c.isspace() for c in text):
        raise BadInputError(f"device URL {text!r} is not printable text without spaces", path=source, hint=hint)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadInputError(f"device URL {text!r}: {exc}", path=source, hint=hint) from None
    if parts.scheme != "ssh" or not text.startswith("ssh://"):
        raise BadInputError(f"device URL {text!r} is not an ssh:// URL", path=source, hint=hint)
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")) or parts.password is not None:
        raise BadInputError(f"device URL {text!r} has a path, query, fragment or password", path=source, hint=hint)
    netloc = parts.netloc
    user = parts.username
    if "@" in netloc and not user:
        raise BadInputError(f"device URL {text!r} has an empty user", path=source, hint=hint)
    if user is not None and not _USER.fullmatch(user):
        raise BadInputError(f"device URL {text!r}: user {user!r} is not a plain login name", path=source, hint=hint)
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host = hostport[1:].partition("]")[0]
        ok = bool(_IPV6.fullmatch(host)) and ":" in host
    else:
        host = hostport.partition(":")[0]
        ok = bool(_HOST.fullmatch(host)) and ".." not in host
    if not ok:
        raise BadInputError(f"device URL {text!r}: host {host!r} is not a host name or address", path=source,
                            hint=hint)
    if (port is not None and not 1 <= port <= 65535) or (port is None and hostport.endswith(":")):
        raise BadInputError(f"device URL {text!r}: port is not in 1..65535", path=source, hint=hint)
    return SshUrl(host=host, user=user, port=port)


def _remote_path(value: Any, *, what: str, source: str) -> str:
    if not isinstance(value, str) or not _REMOTE_PATH.fullmatch(value) or value.startswith("-") \
            or ".." in value.split("/"):
        raise BadInputError(f"{what} {value!r} is not a plain path on the device", path=source,
                            hint="letters, digits and _ . / + ~ - only; no '..', not starting with '-'")
    return value


def _local_file(value: Any, *, what: str, source: str, must_exist: bool) -> str:
    if not isinstance(value, str) or not value or not value.isprintable() or any(c.isspace() for c in value) \
            or any(c in value for c in "\"'\\") or value.startswith("-"):
        raise BadInputError(f"{what} {value!r} is not a usable path", path=source,
                            hint="a path without spaces or quotes (it is passed to ssh -o)")
    path = Path(value).expanduser().absolute()
    if must_exist and not path.is_file():
        raise BadInputError(f"{what} {path} does not exist", path=source)
    return str(path)


@dataclass(frozen=True)
class Device:
    """One board reachable over SSH: where it is, what it is, and how edgekit runs there."""

    name: str
    url: SshUrl
    target: str
    python: str = DEFAULT_PYTHON
    workdir: str = DEFAULT_WORKDIR
    ssh_config: str | None = None  # `ssh -F FILE` (else ~/.ssh/config of the passwd home)
    known_hosts: str | None = None  # `-o UserKnownHostsFile=FILE` (else ~/.ssh/known_hosts)
    identity: str | None = None  # `-i FILE -o IdentitiesOnly=yes` (else the agent / ssh config)
    source: str = ""  # the file it came from ("" for a URL given on the command line)

    def to_toml(self) -> dict[str, str]:
        data = {"url": str(self.url), "target": self.target, "python": self.python, "workdir": self.workdir}
        for key in ("ssh_config", "known_hosts", "identity"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


_KEYS = {f.name for f in fields(Device)} - {"name", "source"}


def make_device(name: str, *, url: str, target: str, python: str = DEFAULT_PYTHON, workdir: str = DEFAULT_WORKDIR,
                ssh_config: str | None = None, known_hosts: str | None = None, identity: str | None = None,
                source: str = "", check_files: bool = True) -> Device:
    """A Device from untrusted strings (flags or a TOML table), each checked; `source` names them in errors."""
    where = source or "device"
    check_name(name, source=where)
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise BadInputError(f"device {name!r}: target {target!r} is not a target name", path=where,
                            hint="e.g. rk3588, ascend310, cpu (edgekit targets)")
    if workdir.startswith("~/"):
        workdir = workdir[2:] or DEFAULT_WORKDIR  # remote commands start in the home directory
    return Device(
        name=name, url=parse_url(url, source=f"{where}: url"), target=target,
        python=_remote_path(python, what=f"device {name!r}: python", source=where),
        workdir=_remote_path(workdir, what=f"device {name!r}: workdir", source=where),
        ssh_config=None if ssh_config is None else _local_file(ssh_config, what="ssh_config", source=where,
                                                              must_exist=check_files),
        known_hosts=None if known_hosts is None else _local_file(known_hosts, what="known_hosts", source=where,
                                                                must_exist=False),
        identity=None if identity is None else _local_file(identity, what="identity", source=where,
                                                          must_exist=check_files),
        source=source,
    )


# ---------------------------------------------------------------------------------------------
# Files


def user_config_dir() -> Path:
    """`$EDGEKIT_CONFIG_DIR`, else the platform's user config dir (e.g. ~/.config/edgekit)."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(platformdirs.user_config_dir("edgekit"))


def user_devices_file() -> Path:
    return user_config_dir() / DEVICES_FILE


def project_devices_file(start: str | Path | None = None) -> Path:
    """`devices.toml` in the current directory (the project's; it overrides the user's entries by name)."""
    return Path(start or Path.cwd()) / DEVICES_FILE


def read_devices(path: Path) -> dict[str, Device]:
    """Every `[devices.NAME]` table of `path` (missing file: none); any bad field is exit 2 naming the file."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"not valid TOML ({exc})", path=path, hint="fix or remove the file") from None
    extra = set(data) - {"devices"}
    table = data.get("devices", {})
    if extra or not isinstance(table, Mapping):
        raise BadInputError(f"unexpected top-level keys {sorted(extra) or ['devices']}", path=path,
                            hint="the file holds [devices.NAME] tables only")
    out: dict[str, Device] = {}
    for name, entry in table.items():
        where = f"{path}: devices.{name}"
        if not isinstance(entry, Mapping):
            raise BadInputError("not a table", path=where)
        unknown = set(entry) - _KEYS
        bad = [k for k, v in entry.items() if not isinstance(v, str)]
        if unknown or bad:
            raise BadInputError(f"unknown or non-string keys {sorted(unknown | set(bad))}", path=where,
                                hint=f"known keys: {', '.join(sorted(_KEYS))}")
        if "url" not in entry or "target" not in entry:
            raise BadInputError("needs url and target", path=where)
        out[name] = make_device(name, source=str(path), check_files=False, **dict(entry))
    return out


def all_devices(project: str | Path | None = None) -> dict[str, Device]:
    """The user's devices, then the project's `devices.toml` on top (same name: the project's wins)."""
    devices = read_devices(user_devices_file())
    devices.update(read_devices(project_devices_file(project)))
    return devices


def write_devices(path: Path, devices: Mapping[str, Device]) -> Path:
    """Rewrite `path` with `devices` (atomic). Values are validated tokens/paths; JSON strings are valid TOML."""
    lines = ["# edgekit devices: edit with `edgekit device add/remove` (docs/devices.md)", ""]
    for name in sorted(devices):
        lines.append(f"[devices.{check_name(name)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in devices[name].to_toml().items()]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "\n".join(lines))


def add_device(device: Device, *, path: Path | None = None, replace_existing: bool = False) -> Path:
    """Store `device` in the user's devices.toml (or `path`); an existing name needs `replace_existing`."""
    path = path or user_devices_file()
    devices = read_devices(path)
    if device.name in devices and not replace_existing:
        raise BadInputError(f"device {device.name!r} already exists", path=path,
                            hint="pass --replace to overwrite it, or `edgekit device remove` it first")
    devices[device.name] = replace(device, source=str(path))
    return write_devices(path, devices)


def remove_device(name: str, *, path: Path | None = None) -> Path:
    path = path or user_devices_file()
    devices = read_devices(path)
    if check_name(name) not in devices:
        raise BadInputError(f"no device {name!r} here", path=path, hint="see `edgekit device list`")
    del devices[name]
    return write_devices(path, devices)


def resolve_device(spec: str | Device, *, target: str | None = None, source: str = "--device") -> Device:
    """A configured device by name, or an ad-hoc `ssh://user@host[:port]` (its target: the bundle's)."""
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, str) and spec.startswith("ssh://"):
        parsed = parse_url(spec, source=source)
        return make_device("adhoc", url=str(parsed), target=target or "unknown", source="")
    name = check_name(spec, source=source)
    devices = all_devices()
    if name not in devices:
        known = ", ".join(sorted(devices)) or "none configured"
        raise BadInputError(f"unknown device {name!r}", path=source,
                            hint=f"known: {known}; add one with `edgekit device add {name} --url ssh://user@host "
                                 "--target TARGET`, or pass --device ssh://user@host[:port]")
    return devices[name]
