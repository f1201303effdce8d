"""Guards for config files and ``key=value`` overrides, which come from people and places esgkit
does not control. Used by ``config.load_config``; every failure is a ``ConfigError`` naming the file
or the full dotted key, and no message ever quotes a line of a file.

* Reading: only a regular file of at most ``MAX_CONFIG_BYTES``, UTF-8 text.
* YAML: the event stream is scanned first (libyaml's parser is iterative; its composer is not, and a
  file of nested ``[[[[…`` crashes the interpreter), bounding nesting depth (``MAX_CONFIG_DEPTH``)
  and the node count after alias expansion (``MAX_CONFIG_NODES``: a "billion laughs" file of nested
  aliases is refused before anything is built). Parse errors report line, column and the kind of
  problem only.
* Interpolation: before ``OmegaConf.resolve``, an upper bound of what each value expands to is
  computed from the references it contains (``${a}${a}`` chains double at every step) and refused
  past ``MAX_EXPANDED_CHARS`` / ``MAX_CONFIG_NODES``. Dynamic keys (``${${k}}``,
  ``${oc.select:${k}}``) are refused: their target cannot be bounded before resolving.
* Resolvers: ``guarded_resolvers()`` swaps OmegaConf's ``oc.env`` and ``oc.decode`` for checked
  versions *only while esgkit loads a config* (registered with ``OmegaConf.register_resolver`` /
  ``register_new_resolver(replace=True)``, the previous entries put back afterwards, under a lock), so
  other OmegaConf users in the process keep the stock resolvers. ``oc.env`` reads only variables named
  in ``$ESGKIT_CONFIG_ENV`` (comma-separated); ``oc.decode`` decodes literals but no interpolations.
  Since ``OmegaConf.resolve`` turns an escaped ``\\${…}`` (or a value read from an allowed variable)
  into text that would resolve again later, outside the guard, ``escape_literals`` escapes such text
  in the resolved config.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, EsgkitError

MAX_CONFIG_BYTES = 4 * 2**20
"""Largest config file read (4 MiB): real configs are a few KiB."""
MAX_CONFIG_NODES = 20_000
"""Most values (keys, scalars, lists, mappings) one file, one override, or the resolved config may
hold, counted after YAML aliases and ``${...}`` references are expanded."""
MAX_CONFIG_DEPTH = 64
"""Deepest nesting of lists/mappings in a config file or an override value."""
MAX_EXPANDED_CHARS = 16 * 2**20
"""Most characters the values of a config may expand to through ``${...}`` references."""
ENV_ALLOW_VAR = "ESGKIT_CONFIG_ENV"
"""Comma-separated names of the environment variables configs may read with ``${oc.env:NAME}``."""
BUILTIN_RESOLVERS = ("oc.select", "oc.create", "oc.dict.keys", "oc.dict.values", "oc.deprecated", "oc.coerce")


# --------------------------------------------------------------------------- reading and parsing


def read_config_text(path: Path, what: str = "config file") -> str:
    """The text of the config file ``path`` (``what`` in messages), refusing what is not a small UTF-8
    regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} not found") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is a folder, not a config file: name a .yaml file (or a shipped config name)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file: a config must be a .yaml file")
    too_big = ConfigError(f"{path}: config file larger than the {MAX_CONFIG_BYTES // 2**20} MiB limit for configs; "
                          "a config names components and options — keep data in separate files")
    if info.st_size > MAX_CONFIG_BYTES:
        raise too_big
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise too_big
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); save the config as UTF-8") from None
    return text.removeprefix("\ufeff")


@functools.lru_cache(maxsize=1)
def _loader() -> Any:
    """OmegaConf's own YAML loader (a safe loader with its float and duplicate-key rules)."""
    try:
        from omegaconf._yaml import get_yaml_loader  # OmegaConf >= 2.4
    except ImportError:  # pragma: no cover - OmegaConf 2.3
        try:
            from omegaconf._utils import get_yaml_loader
        except ImportError:
            return yaml.SafeLoader
    try:  # our own scan bounds alias expansion (with a message of ours); OmegaConf 2.4 also can
        return get_yaml_loader(max_yaml_expanded_nodes=None)
    except TypeError:  # pragma: no cover - OmegaConf 2.3
        return get_yaml_loader()


_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|%\w""")
_CONTENT_AFTER = ("found duplicate key", "found undefined alias", "could not determine a constructor for the tag",
                  "found duplicate anchor", "failed to decode", "expected a single document")


def yaml_problem(exc: BaseException) -> str:
    """Where and what: ``line 3, column 5: mapping values are not allowed here`` — never the text."""
    problem = str(getattr(exc, "problem", None) or getattr(exc, "reason", None) or "malformed YAML")
    problem = " ".join(problem.split())
    for prefix in _CONTENT_AFTER:  # these messages end with text from the file
        if problem.startswith(prefix):
            problem = prefix
    problem = " ".join(_QUOTED.sub("", problem).split(":")[0].split())[:100] or "malformed YAML"
    if problem == "could not determine a constructor for the tag":
        problem = "a tag configs may not use (such as !!python/...)"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    if isinstance(getattr(exc, "position", None), int):
        return f"character {exc.position + 1}: {problem}"  # type: ignore[attr-defined]
    return problem


def scan_yaml(text: str, where: str) -> None:
    """Walk the YAML event stream of ``text`` without building anything, refusing deep nesting and
    alias expansion past the limits (``where``: the file or override, for messages)."""
    parser_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    open_counts: list[int] = [0]
    open_anchors: list[str | None] = []
    total = 0
    try:
        for event in yaml.parse(text, Loader=parser_loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(open_anchors) >= MAX_CONFIG_DEPTH:
                    raise ConfigError(f"{where}: lists/mappings nested more than {MAX_CONFIG_DEPTH} deep; "
                                      "a config is a few levels of sections and options")
                open_counts.append(1)
                open_anchors.append(event.anchor)
                total += 1
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                count, anchor = open_counts.pop(), open_anchors.pop()
                if anchor is not None:
                    sizes[anchor] = count
                open_counts[-1] += count
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                open_counts[-1] += 1
                total += 1
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    raise ConfigError(f"{where}: a YAML alias refers to a list/mapping that contains it; "
                                      "configs cannot be recursive")
                size = sizes.get(event.anchor, 1)
                open_counts[-1] += size
                total += size
            if total > MAX_CONFIG_NODES:
                raise ConfigError(f"{where}: more than {MAX_CONFIG_NODES:,} values once YAML aliases (*name) are "
                                  "expanded; a config is small — write values out, or use fewer aliases")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not a valid YAML config ({yaml_problem(exc)})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None


def parse_yaml(text: str, where: str) -> Any:
    """The Python value of the YAML ``text`` (after ``scan_yaml``), with OmegaConf's loader."""
    scan_yaml(text, where)
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - OmegaConf's loader is a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not a valid YAML config ({yaml_problem(exc)})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None


# --------------------------------------------------------------------------- overrides

OVERRIDE_FORM = ("expected KEY=VALUE, KEY a dotted path of names made of letters, digits, _ and - "
                 "(e.g. segmenter.name=sam, colorizer.seed=4, a list item as key[0]), or ~KEY to delete KEY")
_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\[\d+\])*(?:\.[A-Za-z0-9_-]+(?:\[\d+\])*)*\Z")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\[\]-]")


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a dotted override key, or None."""
    if not key:
        return "the key is empty"
    if any(c.isspace() for c in key):
        return "the key contains whitespace"
    bad = sorted(set(_KEY_CHARS.findall(key)))
    if bad:
        return f"the key contains {', '.join(repr(c) for c in bad[:5])}"
    if key.startswith("."):
        return "the key starts with a dot"
    if key.endswith("."):
        return "the key ends with a dot"
    if ".." in key:
        return "the key has an empty part (a doubled dot)"
    if not _KEY.match(key):
        return "the key is malformed ([...] must hold a list index, as in key[0])"
    return None


def parse_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Check every override; return (keys to delete, ``key=value`` words to set)."""
    deletions, sets = [], []
    for word in overrides:
        if not isinstance(word, str):
            raise ConfigError(f"override {word!r} is not a string; {OVERRIDE_FORM}")
        delete = word.startswith("~")
        key, eq, value = (word[1:] if delete else word).partition("=")
        if not eq and not delete:
            raise ConfigError(f"override {_short(word)} is not of the form key=value (e.g. segmenter.name=sam)")
        if delete and value:
            raise ConfigError(f"override {_short(word)}: ~KEY deletes KEY and takes no value (write ~{key})")
        problem = key_problem(key)
        if problem:
            raise ConfigError(f"override {_short(word)}: {problem}; {OVERRIDE_FORM}")
        if delete:
            deletions.append(key)
        else:
            scan_yaml(value, f"override {_short(word)}")
            sets.append(f"{key}={value}")
    return deletions, sets


def delete_keys(cfg: DictConfig, keys: Sequence[str]) -> DictConfig:
    """``cfg`` without ``keys`` (dotted, ``[N]`` or ``.N`` for list items); a missing key is an error."""
    if not keys:
        return cfg
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key in keys:
        parts = re.sub(r"\[(\d+)\]", r".\1", key).split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, dict) and part in node:
                if last:
                    del node[part]
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                if last:
                    del node[int(part)]
                else:
                    node = node[int(part)]
            else:
                raise ConfigError(f"override ~{key}: there is no such key to delete", key=key)
    return OmegaConf.create(raw)  # type: ignore[return-value]


# --------------------------------------------------------------------------- resolvers


def allowed_env() -> set[str]:
    """The environment variables configs may read (``$ESGKIT_CONFIG_ENV``, comma-separated)."""
    return {v.strip() for v in os.environ.get(ENV_ALLOW_VAR, "").split(",") if v.strip()}


_NO_DEFAULT = object()


def _guarded_env(key, default=_NO_DEFAULT):  # type: ignore[no-untyped-def]  # no annotations: OmegaConf 2.4 checks them
    from omegaconf.resolvers import oc

    if str(key) not in allowed_env():
        raise ConfigError(f"${{oc.env:{key}}} reads environment variable {str(key)!r}, which configs may not read "
                          f"unless allowed: set {ENV_ALLOW_VAR}={key} (comma-separated names) to allow it")
    return oc.env(key) if default is _NO_DEFAULT else oc.env(key, default)


def _guarded_decode(expr, _parent_, _node_):  # type: ignore[no-untyped-def]
    from omegaconf.resolvers import oc

    if isinstance(expr, str) and "${" in expr:
        raise ConfigError("${oc.decode:...} may decode literal values only, not text holding interpolations")
    return oc.decode(expr, _parent_=_parent_, _node_=_node_)


_GUARDED = {"oc.env": _guarded_env, "oc.decode": _guarded_decode}
_GUARD_LOCK = threading.RLock()


def _register(name: str, fn: Any) -> None:
    register = getattr(OmegaConf, "register_resolver", None)  # OmegaConf >= 2.4
    if register is not None:
        register(name, fn, replace=True)
    else:  # pragma: no cover - OmegaConf 2.3
        OmegaConf.register_new_resolver(name, fn, replace=True)


@contextmanager
def guarded_resolvers() -> Iterator[None]:
    """While inside: ``oc.env`` reads only allowed variables, ``oc.decode`` decodes literals only.
    The previous resolvers are restored on exit (the only global state touched, and only meanwhile)."""
    from omegaconf.basecontainer import BaseContainer

    with _GUARD_LOCK:
        table = BaseContainer._resolvers
        saved = {name: table.get(name) for name in _GUARDED}
        try:
            for name, fn in _GUARDED.items():
                _register(name, fn)
            yield
        finally:
            table = BaseContainer._resolvers
            for name, previous in saved.items():
                if previous is None:
                    table.pop(name, None)
                else:
                    table[name] = previous


# --------------------------------------------------------------------------- interpolation bounds

_DYNAMIC_KEY = re.compile(r"\$\{\s*(?:(?:oc\.select|oc\.dict\.keys|oc\.dict\.values)\s*:\s*)?\$\{")
_TOKEN = re.compile(r"\.*[\w-]+(?:\.[\w-]+|\[\d+\])*")


def _spans(text: str) -> Iterator[str]:
    """The text inside each top-level ``${...}`` of ``text``."""
    i = text.find("${")
    while i >= 0:
        depth, j = 0, i
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        yield text[i + 2:j]
        i = text.find("${", j)


def _lookup(root: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    node = root
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                part = next((k for k in node if str(k) == part), part)  # an int or bool key
            if part not in node:
                return False, None
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def check_expansion(cfg: DictConfig) -> None:
    """Refuse a config whose ``${...}`` references could expand past the limits (or use dynamic keys),
    before ``OmegaConf.resolve`` would spend the time and memory."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    memo: dict[tuple[str, ...], tuple[int, int]] = {}
    active: set[tuple[str, ...]] = set()

    def target(token: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        dots = len(token) - len(token.lstrip("."))
        parts = re.sub(r"\[(\d+)\]", r".\1", token.lstrip(".")).split(".")
        base = path[: max(len(path) - dots, 0)] if dots else ()
        found, _ = _lookup(raw, (*base, *parts))
        return (*base, *parts) if found else None

    def bound(path: tuple[str, ...], value: Any) -> tuple[int, int]:  # (nodes, characters)
        if path in memo:
            return memo[path]
        if path in active:
            return 0, 0  # a cycle: OmegaConf reports it, naming the key
        active.add(path)
        if isinstance(value, dict):
            nodes, chars = 1, 0
            for k, v in value.items():
                n, c = bound((*path, str(k)), v)
                nodes, chars = nodes + n + 1, chars + c + len(str(k))
        elif isinstance(value, list):
            nodes, chars = 1, 0
            for i, v in enumerate(value):
                n, c = bound((*path, str(i)), v)
                nodes, chars = nodes + n, chars + c
        elif isinstance(value, str) and "${" in value:
            key = ".".join(path)
            if _DYNAMIC_KEY.search(value):
                raise ConfigError("an interpolation whose key is itself an interpolation (${${...}}) is not "
                                  "supported in configs; name the key literally", key=key)
            nodes, chars = 1, len(value)
            for span in _spans(value):
                for token in _TOKEN.findall(span):
                    ref = target(token, path)
                    if ref is not None:
                        n, c = bound(ref, _lookup(raw, ref)[1])
                        nodes, chars = nodes + n, chars + c
                if nodes > MAX_CONFIG_NODES or chars > MAX_EXPANDED_CHARS:
                    raise ConfigError(f"its ${{...}} references would expand to more than {MAX_CONFIG_NODES:,} "
                                      f"values or {MAX_EXPANDED_CHARS // 2**20} MiB of text (references that "
                                      "multiply at every step); reference fewer values", key=key)
        else:
            nodes, chars = 1, len(str(value))
        active.discard(path)
        memo[path] = (nodes, chars)
        return nodes, chars

    try:
        nodes, chars = bound((), raw)
    except RecursionError:
        raise ConfigError("interpolations refer to each other in a chain too long to resolve") from None
    if nodes > MAX_CONFIG_NODES or chars > MAX_EXPANDED_CHARS:
        raise ConfigError(f"the config's ${{...}} references would expand it to more than {MAX_CONFIG_NODES:,} values "
                          f"or {MAX_EXPANDED_CHARS // 2**20} MiB of text; reference fewer values")


def _escape(text: str) -> str:
    """``text`` as an OmegaConf string that resolves to ``text`` itself (``${`` escaped)."""
    return re.sub(r"(\\*)\$\{", lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", text)


def escape_literals(cfg: DictConfig) -> DictConfig:
    """A resolved ``cfg`` in which text that looks like ``${...}`` (from an escaped ``\\${`` or read from
    the environment) stays text: otherwise it would be resolved again, by whoever reads the config."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    changed = False

    def walk(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and "${" in value:
            changed = True
            return _escape(value)
        return value

    escaped = walk(raw)
    return OmegaConf.create(escaped) if changed else cfg  # type: ignore[return-value]


def esgkit_cause(exc: BaseException) -> EsgkitError | None:
    """The esgkit error that an OmegaConf error wraps (raised inside a guarded resolver), if any."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 20:
        if isinstance(cur, EsgkitError):
            return cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


__all__ = ["ENV_ALLOW_VAR", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "MAX_EXPANDED_CHARS",
           "allowed_env", "check_expansion", "delete_keys", "escape_literals", "esgkit_cause", "guarded_resolvers",
           "key_problem", "parse_overrides", "parse_yaml", "read_config_text", "scan_yaml", "yaml_problem"]
