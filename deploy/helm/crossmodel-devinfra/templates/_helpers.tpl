{{- define "devinfra.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{ include "devinfra.selectorLabels" . }}
app.kubernetes.io/part-of: crossmodel
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "devinfra.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "devinfra.host" -}}
{{- printf "%s-%s.%s.svc.cluster.local" .root.Release.Name .name .root.Release.Namespace -}}
{{- end -}}

{{/* Every container here: non-root with the image's own user, no privilege escalation. */}}
{{- define "devinfra.podSecurity" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "devinfra.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
      - ALL
{{- end -}}
