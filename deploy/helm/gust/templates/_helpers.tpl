{{/* Names: "gust" for a release named gust, else RELEASE-gust. */}}
{{- define "gust.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. Never app.kubernetes.io/managed-by=gust: that label marks the
     tasks' pods, which the scheduler watches and sweeps. */}}
{{- define "gust.labels" -}}
app.kubernetes.io/name: gust
app.kubernetes.io/part-of: gust
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gust.selector" -}}
app.kubernetes.io/name: gust
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gust.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "gust.secretName" -}}
{{- if .Values.secret.create -}}{{ include "gust.fullname" . }}{{- else -}}{{ .Values.secret.existingSecret }}{{- end -}}
{{- end -}}

{{- define "gust.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gust.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* A Secret key as a variable: .name, .key, and the root as .root. */}}
{{- define "gust.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef: {name: {{ include "gust.secretName" .root }}, key: {{ .key }}}
{{- end -}}

{{/* The variables every Gust container has after its own. */}}
{{- define "gust.extraEnv" -}}
- name: RUST_LOG
  value: info
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Staging processing steps reads the store's keys from the artifacts Secret, if any. */}}
{{- define "gust.artifactsEnvFrom" -}}
envFrom:
  - prefix: GUST_ARTIFACTS_
    secretRef:
      name: {{ .Values.artifacts.podSecret | default "gust-artifacts" }}
      optional: true
{{- end -}}

{{- define "gust.configMounts" -}}
- name: home
  mountPath: /var/lib/gust
- name: config
  mountPath: /var/lib/gust/gust.toml
  subPath: gust.toml
{{- end -}}

{{/* git-sync as the first checkout (.oneTime) or the sidecar. */}}
{{- define "gust.gitSync" -}}
{{- $g := .root.Values.dags.gitSync -}}
- name: {{ if .oneTime }}git-sync-init{{ else }}git-sync{{ end }}
  image: {{ $g.image }}
  env:
    - name: GITSYNC_REPO
      value: {{ $g.repo | quote }}
    - name: GITSYNC_REF
      value: {{ $g.ref | quote }}
    - name: GITSYNC_ROOT
      value: /git
    - name: GITSYNC_LINK
      value: repo
    - name: GITSYNC_DEPTH
      value: {{ $g.depth | quote }}
    {{- if .oneTime }}
    - name: GITSYNC_ONE_TIME
      value: "true"
    {{- else }}
    - name: GITSYNC_PERIOD
      value: {{ $g.period | quote }}
    {{- end }}
  {{- with $g.credentialsSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  securityContext:
    runAsUser: 65533
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  volumeMounts:
    - name: dags
      mountPath: /git
{{- end -}}

{{- define "gust.dagsVolume" -}}
- name: dags
{{- if .Values.dags.gitSync.enabled }}
  emptyDir: {}
{{- else }}
  persistentVolumeClaim:
    claimName: {{ required "dags.existingClaim is required when dags.gitSync.enabled is false" .Values.dags.existingClaim }}
    readOnly: true
{{- end }}
{{- end -}}

{{- define "gust.dagsMount" -}}
- name: dags
{{- if .Values.dags.gitSync.enabled }}
  mountPath: /git
{{- else }}
  mountPath: /git/repo
{{- end }}
  readOnly: true
{{- end -}}
