"""A small, strict kustomize renderer for deploy/kubernetes, so the tests need no kubectl.

It implements exactly the kustomization fields the platform's manifests use and refuses every
other one, so a manifest that starts relying on a feature implemented here wrongly or not at all
fails the tests instead of being rendered differently from `kubectl kustomize`:

- `resources`: YAML files below the kustomization's directory (kustomize's default load
  restrictor), and directories holding a kustomization.yaml (anywhere, like kustomize);
- `namespace`: set on every namespaced object;
- `images`: `name` -> `newName` / `newTag` / `digest` on every container and init container;
- `patches`: `path` entries only, one strategic-merge patch document per file (like kustomize's
  `patches` field), whose target is the object the patch itself names (kind, metadata.name).
  Built-in kinds merge lists by their Kubernetes patch merge keys (containers and env by `name`,
  volumeMounts by `mountPath`, ...); a list without a merge key is replaced. Custom resources
  (KEDA's ScaledObject) merge as a JSON merge patch: maps merge, lists are replaced. `null`
  deletes a key; `$patch` directives are refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# API groups whose kinds merge with Kubernetes' strategic merge patch (the others are CRDs).
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
# Kubernetes' patchMergeKey of the list fields these manifests may patch (field name -> key).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is wrong."""


def load_documents(path: Path) -> list[Object]:
    """The YAML documents of a file (empty documents skipped)."""
    with path.open(encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise KustomizeError(f"{path}: not a Kubernetes object: {document!r:.80}")
    return documents


def render(directory: Path) -> list[Object]:
    """The objects `kustomize build directory` would print (order aside)."""
    directory = directory.resolve()
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(kustomization_file.read_text(encoding="utf-8")) or {}
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{kustomization_file}: not implemented here: {sorted(unsupported)}")
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            if not target.is_relative_to(directory):
                raise KustomizeError(f"{entry}: a file outside {directory} (load restrictor)")
            objects += load_documents(target)
        else:
            raise KustomizeError(f"{kustomization_file}: no such resource {entry!r}")
    _refuse_duplicates(objects, kustomization_file)
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{kustomization_file}: only `path` patches: {patch_entry}")
        patch_file = (directory / patch_entry["path"]).resolve()
        if not patch_file.is_relative_to(directory):
            raise KustomizeError(f"{patch_file}: a patch outside {directory} (load restrictor)")
        documents = load_documents(patch_file)
        if len(documents) != 1:
            raise KustomizeError(f"{patch_file}: `patches` takes one patch per file")
        _apply_patch(objects, documents[0], patch_file)
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return objects


def object_id(obj: Object) -> tuple[str, str, str]:
    """(kind, namespace, name): what kustomize keys resources by."""
    metadata = obj.get("metadata", {})
    return obj["kind"], metadata.get("namespace", ""), metadata.get("name", "")


def is_builtin(obj: Object) -> bool:
    """Whether the object's kind is Kubernetes' own (not a custom resource)."""
    api_version: str = obj.get("apiVersion", "")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return group in BUILTIN_GROUPS


def _refuse_duplicates(objects: list[Object], source: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = object_id(obj)
        if key in seen:
            raise KustomizeError(f"{source}: {key} is declared twice")
        seen.add(key)


def _apply_patch(objects: list[Object], patch: Object, source: Path) -> None:
    kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
    targets = [o for o in objects if o["kind"] == kind and o["metadata"].get("name") == name]
    if len(targets) != 1:
        raise KustomizeError(f"{source}: {len(targets)} objects match {kind}/{name}, not 1")
    target = targets[0]
    if patch.get("apiVersion") != target.get("apiVersion"):
        raise KustomizeError(f"{source}: apiVersion differs from {kind}/{name}'s")
    merged = merge(target, patch, strategic=is_builtin(target))
    target.clear()
    target.update(merged)


def merge(base: Any, patch: Any, *, strategic: bool, field: str = "") -> Any:
    """`patch` applied to `base`: a strategic merge patch, or a JSON merge patch."""
    if isinstance(patch, dict):
        if "$patch" in patch or any(str(k).startswith("$") for k in patch):
            raise KustomizeError(f"patch directives are not implemented: {sorted(patch)}")
        if not isinstance(base, dict):
            return {k: v for k, v in copy.deepcopy(patch).items() if v is not None}
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = merge(result[key], value, strategic=strategic, field=key)
            else:
                result[key] = merge(None, value, strategic=strategic, field=key)
        return result
    if isinstance(patch, list) and isinstance(base, list) and strategic:
        key = _merge_key(field, base + patch)
        if key is not None:
            result = copy.deepcopy(base)
            for item in patch:
                matches = [i for i, existing in enumerate(result) if existing[key] == item[key]]
                if matches:
                    result[matches[0]] = merge(
                        result[matches[0]], item, strategic=strategic, field=field
                    )
                else:
                    result.append(copy.deepcopy(item))
            return result
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":  # containerPort in a container, port in a Service
        key = "containerPort" if all("containerPort" in i for i in items) else "port"
    else:
        key = MERGE_KEYS.get(field, "")
    return key if key and all(key in i for i in items) else None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference."""
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_image(objects: list[Object], image: Object) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images: not implemented here: {sorted(unknown)}")
    for container in _containers(objects):
        name, tag, digest = split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        tag = str(image["newTag"]) if "newTag" in image else tag
        digest = image.get("digest", digest)
        reference = name + (f":{tag}" if tag and not digest else "")
        container["image"] = reference + (f"@{digest}" if digest else "")


def _containers(node: Any) -> list[Object]:
    found: list[Object] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict) and "image" in c]
            else:
                found += _containers(value)
    elif isinstance(node, list):
        for item in node:
            found += _containers(item)
    return found
