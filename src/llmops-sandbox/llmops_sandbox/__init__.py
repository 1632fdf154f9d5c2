"""A local Kubernetes for llmops: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler v1.20.2) plus real nodes: per node a kubelet, its
own containerd and kube-proxy (v1.20.2) in its own network and mount namespaces and cgroup,
with fake GPUs advertised through the kubelet's device-plugin API.

  llmops sandbox up [--dir D] [--bin-dir B] [--nodes F] [--no-prometheus]
  llmops sandbox status [--json] | kubeconfig [--print] | prometheus start|stop|restart | down

Other tools find a running sandbox through `<dir>/sandbox.json` (see state.SandboxInfo):
kubeconfig, apiserver_url, prometheus_url (host) and prometheus_pod_url (from pods).

Modules: lifecycle (up/down/status), controlplane (command lines), certs, binaries,
processes (daemons by pid file), nodes (the node file, pure), netplan (addresses, pure),
realnode_config (each node's files and command lines, pure), realnodes (node namespaces,
start, stop, leftovers), nodeinit (a node's supervisor), cgroups, network (bridge, netns),
nodeimages/simimage/oci (images without Docker), nodeservices (add-ons: device plugins
(deviceplugin), scrape targets (prometheus), DNS records (clusterdns), registry mirror
(registry)), kubeapi (the add-ons' listings), pytest_plugin (fixtures).
"""
