import pytest

from llmops_sandbox.podenv import EnvConfigError, container_env, expand, gpu_limit

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
       "spec": {"nodeName": "dc-a100-0", "serviceAccountName": "sa"}}
DATA = {("secret", "ns", "s"): {"k": "secret-v"}, ("configmap", "ns", "cm"): {"a": "1", "b": "2"}}


def lookup(kind, ns, name, key):
    return DATA.get((kind, ns, name), {}).get(key)


def lookup_all(kind, ns, name):
    return DATA.get((kind, ns, name))


def env_of(container, base=None):
    return container_env(container, POD, "10.244.0.5", "10.244.0.1", lookup, lookup_all, base or {})


def test_expand_follows_kubernetes_rules():
    env = {"A": "1"}
    assert expand("x$(A)y", env) == "x1y"
    assert expand("$(B)", env) == "$(B)"
    assert expand("$$(A)", env) == "$(A)"


def test_literal_field_and_key_refs():
    env = env_of({"env": [
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "URL", "value": "http://$(IP):8000"},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k", "optional": True}}},
    ]}, base={"PATH": "/bin"})
    assert env == {"PATH": "/bin", "NAME": "p", "IP": "10.244.0.5", "APP": "x", "URL": "http://10.244.0.5:8000",
                   "S": "secret-v", "C": "1"}


def test_env_from_with_prefix_and_env_overrides():
    env = env_of({"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                  "env": [{"name": "CM_a", "value": "override"}]})
    assert env == {"CM_a": "override", "CM_b": "2"}


def test_missing_secret_key_is_a_config_error():
    with pytest.raises(EnvConfigError, match="couldn't find key nope"):
        env_of({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]})
    with pytest.raises(EnvConfigError, match='configmap "gone" not found'):
        env_of({"envFrom": [{"configMapRef": {"name": "gone"}}]})


def test_gpu_limit():
    assert gpu_limit({"resources": {"limits": {"nvidia.com/gpu": "2"}}}) == 2
    assert gpu_limit({"resources": {"requests": {"nvidia.com/gpu": 1}}}) == 1
    assert gpu_limit({}) == 0
