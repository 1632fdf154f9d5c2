"""Image -> host command mapping: what a container "is" in the sandbox (pure)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from importlib import resources
from typing import Sequence

import yaml


class ImageFileError(ValueError):
    pass


class UnknownImage(LookupError):
    """No rule maps this image; the pod shows ErrImagePull with this message."""


@dataclass(frozen=True)
class ImageRule:
    pattern: str
    command: tuple[str, ...]
    strip_prefixes: tuple[tuple[str, ...], ...] = ()
    use_container_command: bool = False
    # Only for containers whose command starts with this (None: any command).
    when_command: tuple[str, ...] | None = None
    # Drop the container's command (a launcher that cannot run here), keep only its args.
    args_only: bool = False
    # Environment variables taken from the image tag: (name, regex whose group 1 is the value),
    # e.g. LLMOPS_SIM_VLLM_VERSION from vllm/vllm-openai:v0.11.0 -> 0.11.0.
    env_from_tag: tuple[tuple[str, re.Pattern], ...] = ()

    def matches(self, normalized_image: str, command: Sequence[str]) -> bool:
        if not fnmatch.fnmatchcase(normalized_image, self.pattern):
            return False
        return self.when_command is None or tuple(command[: len(self.when_command)]) == self.when_command


def default_images_text() -> str:
    return resources.files("llmops_sandbox").joinpath("images.yaml").read_text()


def parse_images(text: str) -> list[ImageRule]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ImageFileError(f"not valid YAML: {exc}") from exc
    entries = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageFileError("images: must be a non-empty list of {image, command}")
    rules = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("image"), str):
            raise ImageFileError(f"images[{i}].image: must be a string pattern such as 'vllm/vllm-openai:*'")
        use_cmd = bool(e.get("useContainerCommand", False))
        command = e.get("command") or []
        if not use_cmd and (not isinstance(command, list) or not command):
            raise ImageFileError(f"images[{i}].command: must be a non-empty list (or set useContainerCommand: true)")
        when = e.get("whenCommand")
        if when is not None and (not isinstance(when, list) or not when):
            raise ImageFileError(f"images[{i}].whenCommand: must be a non-empty list such as [\"ray\", \"start\"]")
        args_only = e.get("argsOnly", False)
        if not isinstance(args_only, bool):
            raise ImageFileError(f"images[{i}].argsOnly: must be true or false")
        if args_only and use_cmd:
            raise ImageFileError(f"images[{i}].argsOnly: cannot be combined with useContainerCommand")
        from_tag = e.get("envFromTag") or {}
        if not isinstance(from_tag, dict) or not all(isinstance(v, str) for v in from_tag.values()):
            raise ImageFileError(f"images[{i}].envFromTag: must map variable names to regexes, e.g. "
                                 "{LLMOPS_SIM_VLLM_VERSION: '^v?(\\d+\\.\\d+\\.\\d+)'}")
        try:
            env_from_tag = tuple((str(name), re.compile(pattern)) for name, pattern in from_tag.items())
        except re.error as exc:
            raise ImageFileError(f"images[{i}].envFromTag: not a valid regex: {exc}") from None
        if any(p.groups < 1 for _, p in env_from_tag):
            raise ImageFileError(f"images[{i}].envFromTag: each regex needs a group (the value), e.g. '^v?(.+)$'")
        rules.append(ImageRule(
            pattern=e["image"],
            command=tuple(str(c) for c in command),
            strip_prefixes=tuple(tuple(str(x) for x in p) for p in e.get("stripPrefixes") or ()),
            use_container_command=use_cmd,
            when_command=None if when is None else tuple(str(c) for c in when),
            args_only=args_only,
            env_from_tag=env_from_tag,
        ))
    return rules


def normalize_image(image: str) -> str:
    """Drop a default registry and add the implicit :latest tag, so rules stay short."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/"):
        if image.startswith(prefix):
            image = image[len(prefix):]
            break
    name = image.split("@", 1)[0]
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def find_rule(image: str, rules: Sequence[ImageRule], command: Sequence[str] = ()) -> ImageRule:
    """The first rule (file order) whose image pattern and whenCommand both match."""
    normalized = normalize_image(image)
    for rule in rules:
        if rule.matches(normalized, command):
            return rule
    if any(fnmatch.fnmatchcase(normalized, rule.pattern) for rule in rules):
        raise UnknownImage(
            f'image "{image}" is known to the llmops sandbox only with other commands (every rule for '
            f'"{normalized}" has a whenCommand that {list(command)} does not start with); add a rule '
            'without whenCommand to images.yaml or pass --images FILE to `llmops sandbox up`'
        )
    raise UnknownImage(
        f'image "{image}" is not known to the llmops sandbox (no rule in the images file matches '
        f'"{normalized}"); add a rule to images.yaml or pass --images FILE to `llmops sandbox up`'
    )


def image_tag(image: str) -> str:
    return normalize_image(image).rsplit(":", 1)[-1]


def image_env(image: str, rules: Sequence[ImageRule], command: Sequence[str] = ()) -> dict[str, str]:
    """Variables the matching rule derives from the image tag (a tag the regex does not
    match sets nothing, so the stand-in uses its own default)."""
    rule = find_rule(image, rules, list(command))
    tag = image_tag(image)
    env = {}
    for name, pattern in rule.env_from_tag:
        match = pattern.search(tag)
        if match:
            env[name] = match.group(1)
    return env


def strip_prefix(argv: Sequence[str], prefixes: Sequence[Sequence[str]]) -> list[str]:
    for prefix in prefixes:
        if list(argv[: len(prefix)]) == list(prefix):
            return list(argv[len(prefix):])
    return list(argv)


def container_argv(
    image: str,
    command: Sequence[str] | None,
    args: Sequence[str] | None,
    rules: Sequence[ImageRule],
    python: str,
) -> list[str]:
    """The host argv standing in for a container (command/args already $(VAR)-expanded)."""
    rule = find_rule(image, rules, list(command or []))
    given = list(args or []) if rule.args_only else list(command or []) + list(args or [])
    if rule.use_container_command:
        if not given:
            raise UnknownImage(f'image "{image}" runs the container command, but the container has none')
        return given
    base = [python if part == "{python}" else part for part in rule.command]
    return base + strip_prefix(given, rule.strip_prefixes)
