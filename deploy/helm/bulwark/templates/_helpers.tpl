{{/* Names are DNS labels: at most 63 characters. */}}
{{- define "bulwark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bulwark.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What the Deployment, the PodDisruptionBudget, the Service and the NetworkPolicy select pods by. */}}
{{- define "bulwark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bulwark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bulwark.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "bulwark.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "bulwark.image" -}}
{{- $repository := required "image.repository is required: where you pushed the image built from the Dockerfile" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "bulwark.secretName" -}}
{{- default (include "bulwark.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "bulwark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bulwark.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The probes speak HTTPS when the server does (BULWARK_TLS=on, docs/tls.md); kubelet does not verify the certificate. */}}
{{- define "bulwark.probeScheme" -}}
{{- if eq (index .Values.config "BULWARK_TLS" | default "off") "on" -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Every container of the pod: not root, no privilege escalation, no capabilities, nothing written outside the volumes. */}}
{{- define "bulwark.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Settings that only make sense together, checked at render time so `helm install` fails with the reason
instead of pods that crash-loop. What Bulwark checks itself at start (every option's syntax, production's
refusals) is left to it.
*/}}
{{- define "bulwark.checks" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $secrets := .Values.secrets.values -}}
{{- $_ := required "secrets.values.BULWARK_DATABASE_URL is required (or secrets.existingSecret): the chart runs on PostgreSQL" $secrets.BULWARK_DATABASE_URL -}}
{{- if eq .Values.rootKey.provider "env" -}}
{{- $_ := required "secrets.values.BULWARK_ROOT_KEY is required with rootKey.provider=env" $secrets.BULWARK_ROOT_KEY -}}
{{- else -}}
{{- $_ := required "secrets.values.BULWARK_VAULT_TOKEN is required with rootKey.provider=vault-transit" $secrets.BULWARK_VAULT_TOKEN -}}
{{- end -}}
{{- if not .Values.rateLimits.allowMemoryBuckets -}}
{{- $_ := required "secrets.values.BULWARK_REDIS_URL is required: production refuses per-pod rate-limit buckets (or set rateLimits.allowMemoryBuckets)" $secrets.BULWARK_REDIS_URL -}}
{{- end -}}
{{- end -}}
{{- if and (not (hasKey .Values.config "BULWARK_BACKUP_TARGETS")) (ne (index .Values.config "BULWARK_BACKUP_SCHEDULE" | default "") "off") -}}
{{- fail "config.BULWARK_BACKUP_TARGETS is required: without it backups go to the pod's emptyDir and are lost with it (s3://bucket/prefix per region, docs/backups.md); or set config.BULWARK_BACKUP_SCHEDULE to \"off\"" -}}
{{- end -}}
{{- if ge .Values.preStopSleepSeconds .Values.terminationGracePeriodSeconds -}}
{{- fail "preStopSleepSeconds must be shorter than terminationGracePeriodSeconds" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $egress := .Values.networkPolicy.egress -}}
{{- if not $egress.postgresql.to -}}
{{- fail "networkPolicy.egress.postgresql.to is required: the pods may reach nothing the policy does not name" -}}
{{- end -}}
{{- if and (not .Values.rateLimits.allowMemoryBuckets) (not $egress.redis.to) -}}
{{- fail "networkPolicy.egress.redis.to is required unless rateLimits.allowMemoryBuckets" -}}
{{- end -}}
{{- if and (eq .Values.rootKey.provider "vault-transit") (not $egress.kms.to) -}}
{{- fail "networkPolicy.egress.kms.to is required with rootKey.provider=vault-transit" -}}
{{- end -}}
{{- end -}}
{{- end -}}
