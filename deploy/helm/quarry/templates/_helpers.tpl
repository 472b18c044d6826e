{{/* The release's base name: the release name, unless it lacks the chart's. */}}
{{- define "quarry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; `component` names the part. */}}
{{- define "quarry.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The labels that select one component's pods: pass (list $ "worker"). */}}
{{- define "quarry.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "quarry.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The scheduler's control-plane address, as workers reach it. */}}
{{- define "quarry.schedulerAddress" -}}
tcp://{{ include "quarry.fullname" . }}-scheduler.{{ .Release.Namespace }}.svc:{{ .Values.scheduler.port }}
{{- end -}}

{{/* Refuses a cluster that is neither authenticated nor explicitly open. */}}
{{- define "quarry.checkSecurity" -}}
{{- if and (not .Values.curve.enabled) (not .Values.insecure) -}}
{{- fail "curve.enabled=false lets anyone who reaches port 8786 run commands on every worker: set insecure=true to accept that, or keep CURVE on" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every quarry container: logging and S3 access. */}}
{{- define "quarry.env" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.s3.allowHttp }}
- name: AWS_ALLOW_HTTP
  value: "true"
{{- end }}
{{- end -}}
