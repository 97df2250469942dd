{{/* Names, labels and the recommender's settings file. */}}

{{- define "vpa-fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vpa-fleet.fullname" -}}
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

{{- define "vpa-fleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vpa-fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpa-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vpa-fleet.labels" -}}
helm.sh/chart: {{ include "vpa-fleet.chart" . }}
{{ include "vpa-fleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: recommender
{{- end }}

{{- define "vpa-fleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vpa-fleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vpa-fleet.leaseName" -}}
{{- default (include "vpa-fleet.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "vpa-fleet.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Size of /dev/shm in bytes: Ray's object store plus headroom. */}}
{{- define "vpa-fleet.shmBytes" -}}
{{- add (int64 .Values.ray.objectStoreBytes) (int64 .Values.shm.headroomBytes) }}
{{- end }}

{{/*
Fails rendering on combinations the chart does not support, with a message naming the value.
Included by every template that depends on the mode.
*/}}
{{- define "vpa-fleet.validate" -}}
{{- if not (has .Values.mode (list "single" "fleet")) }}
{{- fail (printf "mode: expected single or fleet, got %q" .Values.mode) }}
{{- end }}
{{- if and (eq .Values.mode "fleet") (not .Values.fleet.clusters) }}
{{- fail "fleet.clusters: mode fleet needs at least one cluster (name, prometheus, and how to reach it; docs/deploy.md)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount: %d replicas need leaderElection.enabled: true, otherwise every replica writes the same VPA statuses" (int .Values.replicaCount)) }}
{{- end }}
{{- if ge (float64 .Values.leaderElection.renewIntervalSeconds) (float64 .Values.leaderElection.leaseDurationSeconds) }}
{{- fail "leaderElection.renewIntervalSeconds must be less than leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- end }}

{{/*
The settings file of `vpa-fleet run` (recommender/settings.py names): `config`, with the
sections the chart owns: prometheus (URL from prometheus.url; the token comes from the
environment), leader_election (the Lease of the Role) and ray (the embedded Ray sized to the
pod). Leader election itself is switched on by the --leader-elect flag.
*/}}
{{/* The inspection API's Secrets: the user's, or those the chart generates. */}}
{{- define "vpa-fleet.apiTokenSecretName" -}}
{{- default (printf "%s-api-token" (include "vpa-fleet.fullname" .)) .Values.api.token.secretName }}
{{- end }}
{{- define "vpa-fleet.apiTlsSecretName" -}}
{{- default (printf "%s-api-tls" (include "vpa-fleet.fullname" .)) .Values.api.tls.secretName }}
{{- end }}

{{/* The `api` settings of `vpa-fleet run`: on every interface of the pod, on service.grpcPort,
with the mounted token and certificate. */}}
{{- define "vpa-fleet.apiSettings" -}}
{{- $api := dict "enabled" .Values.api.enabled }}
{{- if .Values.api.enabled }}
{{- $_ := set $api "listen" (printf "0.0.0.0:%d" (int .Values.service.grpcPort)) }}
{{- $_ := set $api "token_file" (printf "/etc/vpa-fleet-api/token/%s" .Values.api.token.secretKey) }}
{{- if .Values.api.tls.enabled }}
{{- $_ := set $api "tls_cert_file" "/etc/vpa-fleet-api/tls/tls.crt" }}
{{- $_ := set $api "tls_key_file" "/etc/vpa-fleet-api/tls/tls.key" }}
{{- end }}
{{- end }}
{{- toYaml $api }}
{{- end }}

{{/* The API's volumes and their mounts (with nindent by the caller). */}}
{{- define "vpa-fleet.apiVolumeMounts" -}}
{{- if .Values.api.enabled }}
- name: api-token
  mountPath: /etc/vpa-fleet-api/token
  readOnly: true
{{- if .Values.api.tls.enabled }}
- name: api-tls
  mountPath: /etc/vpa-fleet-api/tls
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- define "vpa-fleet.apiVolumes" -}}
{{- if .Values.api.enabled }}
- name: api-token
  secret:
    secretName: {{ include "vpa-fleet.apiTokenSecretName" . }}
{{- if .Values.api.tls.enabled }}
- name: api-tls
  secret:
    secretName: {{ include "vpa-fleet.apiTlsSecretName" . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vpa-fleet.settings" -}}
{{- $settings := deepCopy (.Values.config | default dict) }}
{{- $prometheus := deepCopy (.Values.prometheus.settings | default dict) }}
{{- $connection := deepCopy (get $prometheus "connection" | default dict) }}
{{- $_ := set $connection "url" (required "prometheus.url: the URL of the Prometheus holding the pods' usage" .Values.prometheus.url) }}
{{- $_ := set $prometheus "connection" $connection }}
{{- $_ := set $settings "prometheus" $prometheus }}
{{- $_ := set $settings "leader_election" (dict
    "lease_name" (include "vpa-fleet.leaseName" .)
    "lease_namespace" .Release.Namespace
    "lease_duration_s" .Values.leaderElection.leaseDurationSeconds
    "renew_interval_s" .Values.leaderElection.renewIntervalSeconds) }}
{{- $metrics := deepCopy (get $settings "metrics" | default dict) }}
{{- if not (hasKey $metrics "address") }}
{{- $_ := set $metrics "address" "0.0.0.0" }}
{{- end }}
{{- $_ := set $metrics "port" (int .Values.service.metricsPort) }}
{{- $_ := set $settings "metrics" $metrics }}
{{- $_ := set $settings "api" (include "vpa-fleet.apiSettings" . | fromYaml) }}
{{- $_ := set $settings "ray" (dict
    "num_cpus" .Values.ray.numCpus
    "object_store_bytes" .Values.ray.objectStoreBytes
    "dashboard" .Values.ray.dashboard
    "dashboard_port" .Values.ray.dashboardPort
    "temp_dir" "/tmp/ray") }}
{{- toYaml $settings }}
{{- end }}
