"""What stands in for a container image on this machine.

No image can be pulled or run here, so every image a pod names maps to programs installed on the
host: the ``postgres`` image to Debian's PostgreSQL 15 server binaries, and so on (``images.yaml``
beside this file lists them). A run can add or replace entries (``cli.py up --image-map FILE``), so
that PostgreSQL binaries of another minor version, unpacked from Debian's packages with
``apt-get download`` and ``dpkg -x``, stand in for a newer image tag. A container whose image has
no entry is refused, with the image named, as a kubelet that cannot pull it reports
``ErrImagePull``.

An entry's key is a repository (``postgres``, ``quay.io/prometheuscommunity/postgres-exporter``) or
a repository and tag (``postgres:15.15``); a repository and tag comes before the repository alone. Its value:

- ``path``: directories put first on the container's ``PATH`` (the image's binaries);
- ``entrypoint``: the command of a container that gives none (the image's ENTRYPOINT), optional;
- ``env``: variables the image sets (HOME...), below those the container spec sets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import yaml

DEFAULT_MAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images.yaml")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Registries that an image reference may name or leave out for the same image.
DEFAULT_REGISTRY_PREFIXES = ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ImageMapError(ValueError):
    """A map file that cannot be used, or an image it has no entry for; the message is one sentence."""


@dataclass(frozen=True)
class StandIn:
    """What runs for one image: the key that matched and what it says."""

    key: str
    path: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def search_path(self) -> str:
        return ":".join([*self.path, BASE_PATH])


def parse_reference(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference, without digest and default registry; the tag is
    empty when the reference names none."""
    name = image.split("@", 1)[0]
    for prefix in DEFAULT_REGISTRY_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    # A colon after the last slash starts the tag; one before it is a registry's port.
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, ""


def _entry(key: str, value: object, source: str) -> StandIn:
    if not isinstance(value, dict):
        raise ImageMapError(f"{source}: the entry for {key!r} is not a mapping")
    unknown = set(value) - {"path", "entrypoint", "env"}
    if unknown:
        raise ImageMapError(f"{source}: the entry for {key!r} has unknown fields {sorted(unknown)}")
    path, entrypoint, env = value.get("path") or [], value.get("entrypoint") or [], value.get("env") or {}
    if not isinstance(path, list) or not all(isinstance(item, str) and os.path.isabs(item) for item in path):
        raise ImageMapError(f"{source}: {key!r}: path must be a list of absolute directories")
    if not isinstance(entrypoint, list) or not all(isinstance(item, str) and item for item in entrypoint):
        raise ImageMapError(f"{source}: {key!r}: entrypoint must be a list of strings")
    if not isinstance(env, dict) or not all(isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str) for k, v in env.items()):
        raise ImageMapError(f"{source}: {key!r}: env must map variable names to strings")
    return StandIn(key, tuple(path), tuple(entrypoint), dict(env))


def load(path: str) -> dict[str, StandIn]:
    """The entries of one map file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ImageMapError(f"cannot read the image map {path}: {error}") from None
    if not isinstance(data, dict):
        raise ImageMapError(f"{path}: an image map is a mapping from image to stand-in")
    return {str(key): _entry(str(key), value, path) for key, value in data.items()}


class ImageMap:
    """The default map, with the entries of ``overrides`` (files, later ones win) over it."""

    def __init__(self, overrides: list[str] | None = None) -> None:
        self.sources = [DEFAULT_MAP, *(overrides or [])]
        self.entries: dict[str, StandIn] = {}
        for source in self.sources:
            self.entries.update(load(source))

    def resolve(self, image: str) -> StandIn:
        """The stand-in for ``image``; raises ImageMapError naming the image when there is none."""
        if not isinstance(image, str) or not image.strip():
            raise ImageMapError("the container names no image")
        repository, tag = parse_reference(image.strip())
        for key in (f"{repository}:{tag}" if tag else None, repository):
            if key and key in self.entries:
                return self.entries[key]
        raise ImageMapError(f'no stand-in on this machine for image "{image}" (add it to an image map: {", ".join(self.sources)})')
