{{/* Fleet mode: names, the fleet file, the driver's settings and the Ray pods' common parts. */}}

{{- define "vpa-fleet.rayClusterName" -}}
{{- printf "%s-ray" (include "vpa-fleet.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "vpa-fleet.kubeconfigSecretName" -}}
{{- default (printf "%s-kubeconfigs" (include "vpa-fleet.fullname" .)) .Values.fleet.kubeconfigSecret.name }}
{{- end }}

{{- define "vpa-fleet.rayTokenSecretName" -}}
{{- default (printf "%s-ray-token" (include "vpa-fleet.fullname" .)) .Values.fleet.ray.authToken.secretName }}
{{- end }}

{{/* Labels of the Ray pods: not the recommender's selector labels, so that the Service, the
NetworkPolicy and the PodDisruptionBudget of the driver leave them alone. */}}
{{- define "vpa-fleet.rayLabels" -}}
helm.sh/chart: {{ include "vpa-fleet.chart" . }}
app.kubernetes.io/name: {{ include "vpa-fleet.name" . }}-ray
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The fleet file (recommender/fleet/config.py) from fleet.clusters: a cluster that names neither
kubeconfig nor kubeconfig_secret, and is not inCluster, is read from the key of its name in the
kubeconfig Secret of the release namespace.
*/}}
{{- define "vpa-fleet.fleetFile" -}}
{{- $clusters := list }}
{{- range $i, $given := .Values.fleet.clusters }}
{{- $cluster := deepCopy $given }}
{{- if not $cluster.name }}
{{- fail (printf "fleet.clusters[%d].name: every cluster needs a name" $i) }}
{{- end }}
{{- $inCluster := get $cluster "inCluster" | default false }}
{{- $_ := unset $cluster "inCluster" }}
{{- if not (or $inCluster (hasKey $cluster "kubeconfig") (hasKey $cluster "kubeconfig_secret")) }}
{{- $_ := set $cluster "kubeconfig_secret" (dict "namespace" $.Release.Namespace "name" (include "vpa-fleet.kubeconfigSecretName" $) "key" $cluster.name) }}
{{- end }}
{{- $clusters = append $clusters $cluster }}
{{- end }}
{{- toYaml (dict "actors" (int .Values.fleet.actors) "tick_budget_s" .Values.fleet.tickBudgetSeconds "clusters" $clusters) }}
{{- end }}

{{/*
The driver's settings file: `config` without what the fleet file holds per cluster (cluster,
namespaces), the Lease, and the Ray cluster's client address.
*/}}
{{- define "vpa-fleet.fleetSettings" -}}
{{- $settings := omit (deepCopy (.Values.config | default dict)) "cluster" "namespaces" }}
{{- $_ := set $settings "leader_election" (dict
    "lease_name" (include "vpa-fleet.leaseName" .)
    "lease_namespace" .Release.Namespace
    "lease_duration_s" .Values.leaderElection.leaseDurationSeconds
    "renew_interval_s" .Values.leaderElection.renewIntervalSeconds) }}
{{- $_ := set $settings "ray" (dict
    "address" (printf "ray://%s-head-svc.%s.svc:10001" (include "vpa-fleet.rayClusterName" .) .Release.Namespace)) }}
{{- $_ := set $settings "api" (include "vpa-fleet.apiSettings" . | fromYaml) }}
{{- toYaml $settings }}
{{- end }}

{{/* Environment of every Ray process and the driver: token authentication with one token. */}}
{{- define "vpa-fleet.rayEnv" -}}
- name: HOME
  value: /tmp
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "vpa-fleet.rayTokenSecretName" . }}
      key: {{ .Values.fleet.ray.authToken.secretKey }}
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
{{- end }}

{{/* One Ray pod template (head or workers): $ is the root, .group the group's values. */}}
{{- define "vpa-fleet.rayPod" -}}
{{- $root := .root }}
{{- $group := .group }}
metadata:
  labels:
    {{- include "vpa-fleet.rayLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  serviceAccountName: {{ include "vpa-fleet.serviceAccountName" $root }}
  automountServiceAccountToken: true
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: ray-{{ .component }}
      image: {{ include "vpa-fleet.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      env:
        {{- include "vpa-fleet.rayEnv" $root | nindent 8 }}
        {{- with $root.Values.fleet.ray.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml $group.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: dshm
          mountPath: /dev/shm
        {{- with $root.Values.fleet.ray.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $root.Values.tmp.sizeLimit }}
    # Ray's object store (objectStoreBytes) plus headroom; memory-backed, so it counts
    # against the container's memory limit.
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ add (int64 $group.objectStoreBytes) (int64 $root.Values.shm.headroomBytes) | quote }}
    {{- with $root.Values.fleet.ray.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
