"""A local Kubernetes for llmops: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler v1.20.2) plus simulated GPU nodes whose pods run as
host processes in their own network namespaces.

  llmops sandbox up [--dir D] [--bin-dir B] [--nodes F] [--images F] [--no-prometheus]
  llmops sandbox status [--json] | kubeconfig [--print] | prometheus start|stop|restart | down

Other tools find a running sandbox through `<dir>/sandbox.json` (see state.SandboxInfo):
kubeconfig, apiserver_url, prometheus_url (host) and prometheus_pod_url (from pods).

Modules: lifecycle (up/down/status), controlplane (command lines), certs, binaries,
processes (daemons by pid file), agent (the kubelet stand-in) with podrunner (one pod),
network/ipam (bridge, netns, IPs), probes/probe_run, podstatus, podenv, mounts, images,
nodes (pure node file -> Node objects), prometheus, kubelet_api (logs), kubeapi (the only
Kubernetes I/O), pytest_plugin (fixtures).
"""
