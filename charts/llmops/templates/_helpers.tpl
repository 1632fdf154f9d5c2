{{/* Chart name, truncated to a DNS label. */}}
{{- define "llmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or just the release when it already contains the chart name). */}}
{{- define "llmops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "llmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: llmops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llmops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "llmops.testImage" -}}
{{- if .Values.tests.image.repository }}
{{- printf "%s:%s" .Values.tests.image.repository (default .Chart.AppVersion .Values.tests.image.tag) }}
{{- else }}
{{- include "llmops.image" . }}
{{- end }}
{{- end }}

{{/* The operator Service: metrics, health and the webhook. */}}
{{- define "llmops.serviceName" -}}
{{- include "llmops.fullname" . }}
{{- end }}

{{- define "llmops.webhookSecretName" -}}
{{- if eq .Values.webhook.certificates.mode "existing" }}
{{- required "webhook.certificates.existingSecret is required when webhook.certificates.mode is existing" .Values.webhook.certificates.existingSecret }}
{{- else }}
{{- printf "%s-webhook-tls" (include "llmops.fullname" .) }}
{{- end }}
{{- end }}

{{- define "llmops.webhookCertDir" -}}
/etc/llmops/webhook-tls
{{- end }}

{{/* True (non-empty) when Prometheus-operator objects should be rendered. */}}
{{- define "llmops.prometheusOperator" -}}
{{- if or .Values.monitoring.assumePrometheusOperator (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{- end }}
{{- end }}

{{/* Namespaces holding the operator's namespaced permissions: the watched ones, or "" = cluster-wide. */}}
{{- define "llmops.clusterwide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{- end }}
{{- end }}

{{/* A map of strings as "key: \"value\"" lines: toYaml leaves values such as 07e35 unquoted,
     and the API server then reads them as numbers. */}}
{{- define "llmops.stringMap" -}}
{{- range $key, $value := . }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The activator (templates/activator.yaml): its own name, labels and identity. */}}
{{- define "llmops.activatorName" -}}
{{- printf "%s-activator" (include "llmops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmops.activatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "llmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: activator
{{- end }}

{{- define "llmops.activatorLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llmops.activatorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: llmops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
