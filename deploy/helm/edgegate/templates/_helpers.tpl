{{/*
Names, labels and the pieces every component's pod shares. A component template calls these
with (dict "root" $ "component" "gateway"), so that every pod gets the same security
context, scheduling keys, labels and image rules.
*/}}

{{- define "edgegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release name alone when it already holds the chart's. */}}
{{- define "edgegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "edgegate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* An object's name: "<fullname>-<component>". */}}
{{- define "edgegate.componentName" -}}
{{- printf "%s-%s" (include "edgegate.fullname" .root) .component -}}
{{- end -}}

{{- define "edgegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgegate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "edgegate.labels" -}}
{{ include "edgegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: edgegate
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata: name, namespace, labels. */}}
{{- define "edgegate.metadata" -}}
name: {{ include "edgegate.componentName" . }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "edgegate.labels" . | nindent 2 }}
{{- end -}}

{{/*
"repo:tag" or "repo@digest", imageRegistry prefixed to edgegate's own images;
(dict "root" $ "image" .Values.gateway.image), plus "foreign" true for an image that names
its own registry (NATS).
*/}}
{{- define "edgegate.image" -}}
{{- $repository := .image.repository -}}
{{- if and .root.Values.imageRegistry (not .foreign) -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .root.Values.imageRegistry) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the services reach NATS. */}}
{{- define "edgegate.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "edgegate.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.nats.external.url -}}
{{- end -}}
{{- end -}}

{{/*
The restricted Pod Security Standard, pod level: a fixed non-root user (the images' UID
10001), RuntimeDefault seccomp, and a group that owns the writable volumes.
*/}}
{{- define "edgegate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ default 10001 .uid }}
runAsGroup: {{ default 10001 .uid }}
fsGroup: {{ default 10001 .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted Pod Security Standard, container level; the root filesystem read-only. */}}
{{- define "edgegate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling keys and pull secrets; (dict "root" $ "component" "gateway" "values" .Values.gateway) */}}
{{- define "edgegate.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range .values.topologySpreadConstraints }}
  - {{- toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (fromYaml (include "edgegate.selectorLabels" $))))) | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod metadata: labels and annotations (metrics scraping, config checksums). */}}
{{- define "edgegate.podMetadata" -}}
labels:
  {{- include "edgegate.labels" . | nindent 2 }}
  {{- with .values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := dict }}
{{- if and .root.Values.metrics.podAnnotations .metricsPort }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (toString .metricsPort) }}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with .checksum }}
{{- $_ := set $annotations "checksum/config" . }}
{{- end }}
{{- $annotations = merge (deepCopy (default dict .values.podAnnotations)) $annotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The environment every service reads: where NATS is, then the component's own env. */}}
{{- define "edgegate.env" -}}
- name: {{ printf "EDGEGATE_%s_NATS_URL" (upper .component) }}
  value: {{ include "edgegate.natsUrl" .root | quote }}
{{- with .values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* gRPC probes on the standard health service; inference adds a startup probe. */}}
{{- define "edgegate.grpcProbes" -}}
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* Checks that no value contradicts another; each message names the value. */}}
{{- define "edgegate.validate" -}}
{{- range $component := list "gateway" "inference" "taskstore" "security" -}}
{{- $autoscaling := (index $.Values $component).autoscaling -}}
{{- if and $autoscaling.enabled (gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above %s.autoscaling.maxReplicas (%v)" $component $autoscaling.minReplicas $component $autoscaling.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.inference.models .Values.inference.modelVolume -}}
{{- fail "set inference.models (fetched at start) or inference.modelVolume (a volume that holds them), not both" -}}
{{- end -}}
{{- if and .Values.nats.enabled .Values.nats.external.url -}}
{{- fail "nats.external.url is set but nats.enabled is true: set nats.enabled=false to use an existing NATS" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.inference.models -}}
{{- $key := printf "%s/%v" .name .version -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "inference.models lists %s twice" $key) -}}
{{- end -}}
{{- $_ := set $seen $key true -}}
{{- end -}}
{{- end -}}

{{/* What the operator may do, wherever it acts (a Role per namespace, or a ClusterRole). */}}
{{- define "edgegate.operatorRules" -}}
- apiGroups: [edgegate.io]
  resources: [modeldeployments, tenantquotas]
  verbs: [get, list, watch, patch]
- apiGroups: [edgegate.io]
  resources: [modeldeployments/status, tenantquotas/status]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, resourcequotas, limitranges]
  verbs: [get, list, watch, create, patch, delete]
# Whether a fallback's API key Secret exists and holds its key (never listed or watched).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* NetworkPolicy egress to NATS: the chart's pods, or an external URL's ports, anywhere. */}}
{{- define "edgegate.natsEgress" -}}
{{- if .Values.nats.enabled -}}
- ports:
    - {protocol: TCP, port: 4222}
  to:
    - podSelector:
        matchLabels:
          {{- include "edgegate.selectorLabels" (dict "root" . "component" "nats") | nindent 10 }}
{{- else -}}
{{- $ports := dict -}}
{{- range splitList "," .Values.nats.external.url -}}
{{- $port := regexFind ":[0-9]+$" (trimSuffix "/" .) | trimPrefix ":" | default "4222" -}}
{{- $_ := set $ports $port true -}}
{{- end -}}
- ports:
    {{- range keys $ports | sortAlpha }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}
{{- end -}}

{{- define "edgegate.dnsEgress" -}}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
{{- end -}}

{{/*
checkov checks this chart skips, each with its reason, on the workloads they concern; pass
(list "CKV_K8S_38=why") for a workload's own. checkov reads checkov.io/skipN annotations.
*/}}
{{- define "edgegate.checkovSkips" -}}
{{- $skips := list
  "CKV_K8S_43=images are pinned by <component>.image.digest when one is set; the default is the chart's appVersion tag, since a digest exists only after a build"
  "CKV_K8S_15=IfNotPresent with version tags or digests; Always would make every pod start depend on the registry (set <component>.image.pullPolicy to change it)"
-}}
{{- range $i, $skip := concat $skips (default list .) }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end -}}
