{{- /*
Generated from src/llmops/rbac.py (`llmops rbac --helm > charts/llmops/templates/_rbac_rules.tpl`);
edit the rules there. Why each rule exists:
  llmops.io/llmdeployments: Kopf lists/watches them and patches finalizers and its progress annotations; kube.py gets them
  llmops.io/llmdeployments/status: kube.py patches status
  llmops.io/llmdeployments/scale: the autoscaler writes replicas through /scale
  apps/deployments,statefulsets,daemonsets: children: Kopf watches them; kube.py gets and server-side applies them (a PATCH; the API server also checks create when it creates the object) and deletes what the spec no longer needs (single-node <-> multi-node, fewer groups, pre-staging turned off)
  core/services: children, as above
  policy/poddisruptionbudgets: kube.py gets and applies the PDB; Kopf watches PDBs like every child (the operator's caches are Kopf indices)
  core/pods: Kopf watches pods; kube.py lists them, patches the pod-deletion-cost before a scale-down and a group's member fingerprint, and deletes the pods of a broken group (restart)
  core/pods/status: the leader's readiness gate (llmops.io/group-ready)
  core/endpoints: spec.activator: while nothing is Ready a deployment's Service points at the activator; the operator gets the activator's Endpoints, writes the Service's own, and watches them to re-write them if overwritten
  core/events: core v1 Events (Kopf's and ours; Kopf never posts events.k8s.io Events)
  leaderworkerset.x-k8s.io/leaderworkersets: multi-node groups as LeaderWorkerSets, where that CRD is installed
  apiextensions.k8s.io/customresourcedefinitions: Kopf's resource scanning; they also tell the operator when LeaderWorkerSet or PodMonitor appear or go while it runs
  core/nodes: the planner's GPU inventory (a Kopf index)
  core/namespaces: Kopf, when it watches named namespaces only
*/ -}}
{{- define "llmops.namespacedRules" -}}
- apiGroups: [llmops.io]
  resources: [llmdeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [llmops.io]
  resources: [llmdeployments/status]
  verbs: [patch]
- apiGroups: [llmops.io]
  resources: [llmdeployments/scale]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch, delete]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
{{- if .Values.activator.enabled }}
- apiGroups: [""]
  resources: [endpoints]
  verbs: [get, list, watch, create, patch]
{{- end }}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.leaderWorkerSet }}
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- end }}
{{- define "llmops.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- if not (include "llmops.clusterwide" .) }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
