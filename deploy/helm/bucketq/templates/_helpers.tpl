{{- define "bucketq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bucketq.fullname" -}}
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

{{- define "bucketq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bucketq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "bucketq.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "bucketq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bucketq
{{- end }}

{{- define "bucketq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bucketq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bucketq.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if .Values.secret.create }}
{{- include "bucketq.fullname" . }}
{{- end }}
{{- end }}

{{/*
bucketq.config is the rendered bucketq YAML: values.config with the keys the
chart owns (listen addresses from ports, shutdown_timeout) set over it.
*/}}
{{- define "bucketq.config" -}}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- range $k := list "listen" "otlp_grpc" "otlp_http" "shutdown_timeout" }}
{{- if hasKey $c $k }}
{{- fail (printf "config.%s is set by the chart (from ports / shutdownTimeoutSeconds); remove it from values.config" $k) }}
{{- end }}
{{- end }}
{{- if not (hasKey $c "object_store") }}
{{- fail "config.object_store is required: a pod has no disk that outlives it, so the queue must live in an object-storage bucket" }}
{{- end }}
{{- if eq (upper (toString (dig "type" "" $c.object_store))) "FILESYSTEM" }}
{{- fail "config.object_store.type FILESYSTEM would keep the queue on the pod's own disk, lost with the pod; use S3, GCS or AZURE" }}
{{- end }}
{{- $_ := set $c "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- if eq .Values.mode "producer" }}
{{- $_ := set $c "otlp_grpc" (ternary (printf "0.0.0.0:%d" (int .Values.ports.otlpGrpc)) "" (gt (int .Values.ports.otlpGrpc) 0)) }}
{{- $_ := set $c "otlp_http" (ternary (printf "0.0.0.0:%d" (int .Values.ports.otlpHttp)) "" (gt (int .Values.ports.otlpHttp) 0)) }}
{{- end }}
{{- $_ := set $c "shutdown_timeout" (printf "%ds" (int .Values.shutdownTimeoutSeconds)) }}
{{- toYaml $c }}
{{- end }}

{{/*
bucketq.memoryBytes converts a Kubernetes memory quantity (512Mi, 1G, 1e9,
268435456) to bytes.
*/}}
{{- define "bucketq.memoryBytes" -}}
{{- $q := toString . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $num := regexFind "^[0-9.]+" $q }}
{{- $suffix := trimPrefix $num $q }}
{{- if not $num }}
{{- fail (printf "resources.limits.memory %q: not a memory quantity" $q) }}
{{- end }}
{{- if eq $suffix "" }}
{{- $num | float64 | int64 }}
{{- else if hasKey $units $suffix }}
{{- mulf (float64 $num) (get $units $suffix) | int64 }}
{{- else }}
{{- fail (printf "resources.limits.memory %q: unknown unit %q (use Ki, Mi, Gi, k, M, G)" $q $suffix) }}
{{- end }}
{{- end }}

{{- define "bucketq.terminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (int .Values.shutdownTimeoutSeconds) (int .Values.terminationMarginSeconds) }}
{{- end }}
