{{/* Chart name, truncated to a DNS label. */}}
{{- define "joulie-tasks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it contains the chart name, else release-chart. */}}
{{- define "joulie-tasks.fullname" -}}
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

{{- define "joulie-tasks.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "joulie-tasks.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "joulie-tasks.redisName" -}}
{{- default (printf "%s-redis" (include "joulie-tasks.fullname" .)) .Values.redis.name | trunc 57 | trimSuffix "-" }}
{{- end }}

{{- define "joulie-tasks.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "joulie-tasks.metricsJob" -}}
{{- default (printf "%s-metrics" (include "joulie-tasks.fullname" .)) .Values.alerts.job }}
{{- end }}

{{/* Labels of every object; the kustomize manifests carry the first and the last. */}}
{{- define "joulie-tasks.labels" -}}
app.kubernetes.io/name: {{ include "joulie-tasks.name" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: joulie
{{- end }}

{{/* Selector labels of one component: pass (list $ "worker"). */}}
{{- define "joulie-tasks.selectorLabels" -}}
{{- $top := index . 0 }}
app.kubernetes.io/name: {{ include "joulie-tasks.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of one component's objects: pass (list $ "worker"). */}}
{{- define "joulie-tasks.componentLabels" -}}
{{ include "joulie-tasks.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Pod security context of the operator pods (uid 10001 of the image). */}}
{{- define "joulie-tasks.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "joulie-tasks.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* envFrom (+ REDIS_URL from a Secret with an external Redis) of operator containers. */}}
{{- define "joulie-tasks.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "joulie-tasks.fullname" . }}
{{- if not .Values.redis.enabled }}
env:
  - name: REDIS_URL
    valueFrom:
      secretKeyRef:
        name: {{ required "externalRedis.existingSecret is required when redis.enabled=false" .Values.externalRedis.existingSecret }}
        key: {{ .Values.externalRedis.secretKey }}
{{- end }}
{{- end }}

{{/* imagePullSecrets and scheduling of a pod spec. */}}
{{- define "joulie-tasks.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* SCHEDULE_FILE (docs/SPEC.md §12.3): with schedule.windows set, the schedule ConfigMap
is mounted read-only in every operator pod (each one reads its settings at start-up). */}}
{{- define "joulie-tasks.schedulePath" -}}
/etc/joulie-tasks/schedule.yaml
{{- end }}

{{- define "joulie-tasks.scheduleMount" -}}
{{- if .Values.schedule.windows }}
- name: schedule
  mountPath: /etc/joulie-tasks
  readOnly: true
{{- end }}
{{- end }}

{{- define "joulie-tasks.scheduleVolume" -}}
{{- if .Values.schedule.windows }}
- name: schedule
  configMap:
    name: {{ include "joulie-tasks.fullname" . }}-schedule
{{- end }}
{{- end }}

{{- define "joulie-tasks.scheduleChecksum" -}}
{{- if .Values.schedule.windows }}
checksum/schedule: {{ toYaml .Values.schedule | sha256sum }}
{{- end }}
{{- end }}
