{{/* Egress rules toward an external system: (dict "root" $ "system" "kafka") */}}
{{- define "crossmodel.egressTo" -}}
{{- $spec := index .root.Values.networkPolicy .system -}}
- ports:
    {{- range $spec.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with $spec.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "crossmodel.egressDns" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}
