{{- define "bucketq.podTemplate" -}}
metadata:
  labels:
    {{- include "bucketq.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Config and chart-made Secret changes roll the pods.
    checksum/config: {{ include "bucketq.config" . | sha256sum }}
    {{- if and (not .Values.secret.existingSecret) .Values.secret.create }}
    checksum/secret: {{ toJson .Values.secret.create | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "bucketq.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  # preStop sleep + shutdown_timeout (the drain) + margin: a drain is never
  # cut short by SIGKILL.
  terminationGracePeriodSeconds: {{ include "bucketq.terminationGracePeriodSeconds" . }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- if and (eq .Values.mode "producer") (eq .Values.producer.kind "Deployment") .Values.producer.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- $selector := dict "labelSelector" (dict "matchLabels" (include "bucketq.selectorLabels" . | fromYaml)) }}
    {{- range .Values.producer.topologySpreadConstraints }}
    - {{ merge (deepCopy $selector) . | toYaml | indent 6 | trim }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: bucketq
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - {{ ternary "produce" "consume" (eq .Values.mode "producer") }}
        - --config=/etc/bucketq/bucketq.yaml
      ports:
        - name: http
          containerPort: {{ .Values.ports.http }}
          protocol: TCP
        {{- if eq .Values.mode "producer" }}
        {{- if gt (int .Values.ports.otlpGrpc) 0 }}
        - name: otlp-grpc
          containerPort: {{ .Values.ports.otlpGrpc }}
          protocol: TCP
        {{- end }}
        {{- if gt (int .Values.ports.otlpHttp) 0 }}
        - name: otlp-http
          containerPort: {{ .Values.ports.otlpHttp }}
          protocol: TCP
        {{- end }}
        {{- end }}
      env:
        {{- if and .Values.useGOMEMLIMIT .Values.resources.limits.memory }}
        - name: GOMEMLIMIT
          value: {{ div (mul (include "bucketq.memoryBytes" .Values.resources.limits.memory | int64) (int .Values.goMemLimitPercent)) 100 | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "bucketq.secretName" . }}
      envFrom:
        - secretRef:
            name: {{ . }}
      {{- end }}
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/bucketq
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "bucketq.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
{{- end }}
