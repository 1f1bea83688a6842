{{/*
The components in deploy order, and the facts about each that are not configuration: the port
it serves (docs/services.md), how it is probed, who calls it, whom it calls and which external
systems it uses. The generic templates (components.yaml, networkpolicies.yaml, migrations.yaml)
read only this table and .Values, so a component is added here and in values, nowhere else.
*/}}
{{- define "crossmodel.componentNames" -}}
edge auth router billing usage simulator
{{- end -}}

{{- define "crossmodel.facts" -}}
edge:
  port: 8080
  protocol: http
  readinessPath: /readyz
  livenessPath: /healthz
  callers: []
  calls: [auth, router, billing, usage]
  uses: [kafka]
  telemetry: true
  migrates: false
auth:
  port: 50051
  protocol: grpc
  callers: [edge]
  calls: [billing]
  uses: [postgres, redis]
  telemetry: true
  migrates: true
router:
  port: 50052
  protocol: grpc
  callers: [edge]
  calls: [simulator]
  uses: [providers]
  telemetry: true
  migrates: false
billing:
  port: 50053
  protocol: grpc
  callers: [edge, auth]
  calls: []
  uses: [postgres, redis, kafka]
  telemetry: true
  migrates: true
usage:
  port: 50054
  protocol: grpc
  callers: [edge]
  calls: []
  uses: [postgres, kafka]
  telemetry: true
  migrates: true
simulator:
  port: 9100
  protocol: http
  readinessPath: /healthz
  livenessPath: /healthz
  callers: [router]
  calls: []
  uses: []
  telemetry: false
  migrates: false
{{- end -}}

{{/* The facts of one component: include "crossmodel.fact" (dict "root" $ "name" "auth") | fromYaml */}}
{{- define "crossmodel.fact" -}}
{{- index (include "crossmodel.facts" .root | fromYaml) .name | toYaml -}}
{{- end -}}

{{- define "crossmodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crossmodel.fullname" -}}
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

{{- define "crossmodel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name of a component: (dict "root" $ "name" "auth") */}}
{{- define "crossmodel.componentName" -}}
{{- printf "%s-%s" (include "crossmodel.fullname" .root | trunc 50 | trimSuffix "-") .name -}}
{{- end -}}

{{- define "crossmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crossmodel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "crossmodel.labels" -}}
helm.sh/chart: {{ include "crossmodel.chart" .root }}
{{ include "crossmodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: crossmodel
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "crossmodel.image" -}}
{{- $c := index .root.Values.components .name -}}
{{- $repository := $c.image.repository | default (printf "%s/%s" .root.Values.image.repository .name) -}}
{{- $tag := $c.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/*
gRPC target of a component (host:port; gRPC resolves it with DNS). The Services of gRPC
components are headless, so the name resolves to the ready pods themselves and clients spread
connections (or calls, with a round_robin policy) across them instead of pinning every
long-lived HTTP/2 connection to whichever pod a virtual IP picked. Fully qualified, so no
search-domain lookups happen on reconnects.
*/}}
{{- define "crossmodel.grpcTarget" -}}
{{- $fact := include "crossmodel.fact" . | fromYaml -}}
{{- printf "%s.%s.svc.%s:%v" (include "crossmodel.componentName" .) .root.Release.Namespace .root.Values.clusterDomain $fact.port -}}
{{- end -}}

{{- define "crossmodel.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .root.Values.secrets.existingSecret }}
    key: {{ .key }}
{{- if .optional }}
    optional: true
{{- end }}
{{- end -}}

{{/* The environment of a component's container (also used by its migration Job). */}}
{{- define "crossmodel.env" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $c := index $root.Values.components $name -}}
{{- $fact := include "crossmodel.fact" . | fromYaml -}}
{{- $p := printf "CROSSMODEL_%s_" (upper $name) -}}
{{- $keys := $root.Values.secrets.keys -}}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if ne $name "simulator" }}
- name: {{ $p }}LOG_LEVEL
  value: {{ $c.logLevel | default $root.Values.logLevel | quote }}
- name: {{ $p }}SHUTDOWN_GRACE_SECONDS
  value: {{ $root.Values.shutdownGraceSeconds | quote }}
{{- end }}
{{- if eq $fact.protocol "grpc" }}
- name: {{ $p }}LISTEN
  value: "0.0.0.0:{{ $fact.port }}"
{{- end }}
{{- if eq $name "edge" }}
- name: CROSSMODEL_EDGE_HOST
  value: "0.0.0.0"
- name: CROSSMODEL_EDGE_PORT
  value: {{ $fact.port | quote }}
{{- range $callee := $fact.calls }}
- name: CROSSMODEL_EDGE_{{ upper $callee }}_TARGET
  value: {{ include "crossmodel.grpcTarget" (dict "root" $root "name" $callee) | quote }}
{{- end }}
- name: CROSSMODEL_EDGE_SPOOL_DIR
  value: /var/lib/crossmodel/spool
- name: CROSSMODEL_EDGE_ADMIN_TOKEN
  {{- include "crossmodel.secretRef" (dict "root" $root "key" $keys.adminToken) | nindent 2 }}
{{- end }}
{{- if has "kafka" $fact.uses }}
- name: {{ $p }}KAFKA_BOOTSTRAP
  value: {{ $root.Values.kafka.bootstrap | quote }}
- name: {{ $p }}USAGE_TOPIC
  value: {{ $root.Values.kafka.usageTopic | quote }}
{{- if eq $name "edge" }}
- name: CROSSMODEL_EDGE_KAFKA_IDEMPOTENCE
  value: {{ $root.Values.kafka.idempotence | quote }}
{{- else }}
- name: {{ $p }}DLQ_TOPIC
  value: {{ printf "%s.%s.dlq" $root.Values.kafka.usageTopic $name | quote }}
{{- end }}
{{- end }}
{{- if has "postgres" $fact.uses }}
- name: {{ $p }}DATABASE_URL
  {{- include "crossmodel.secretRef" (dict "root" $root "key" (index $keys (printf "%sDatabaseUrl" $name))) | nindent 2 }}
{{- end }}
{{- if has "redis" $fact.uses }}
- name: {{ $p }}REDIS_URL
  {{- include "crossmodel.secretRef" (dict "root" $root "key" $keys.redisUrl) | nindent 2 }}
{{- end }}
{{- if eq $name "auth" }}
- name: CROSSMODEL_AUTH_BILLING_TARGET
  value: {{ include "crossmodel.grpcTarget" (dict "root" $root "name" "billing") | quote }}
{{- end }}
{{- if eq $name "router" }}
{{- if or $c.catalog.inline $c.catalog.existingConfigMap }}
- name: CROSSMODEL_ROUTER_CATALOG
  value: /etc/crossmodel/router/catalog.yaml
{{- end }}
{{- range $provider, $spec := $c.providers }}
{{- if $spec.baseUrl }}
- name: CROSSMODEL_ROUTER_PROVIDER_{{ $provider }}_BASE_URL
  value: {{ tpl $spec.baseUrl $root | quote }}
{{- end }}
{{- if $spec.apiKeySecretKey }}
- name: CROSSMODEL_ROUTER_PROVIDER_{{ $provider }}_API_KEY
  {{- include "crossmodel.secretRef" (dict "root" $root "key" $spec.apiKeySecretKey "optional" true) | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
{{- if $fact.telemetry }}
- name: OTEL_SERVICE_NAME
  value: crossmodel-{{ $name }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "crossmodel.resourceAttributes" $root | quote }}
{{- with $root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $root.Values.otel.protocol | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $root.Values.otel.tracesSampler | quote }}
{{- with $root.Values.otel.tracesSamplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := $c.env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* $(VAR) references resolve against the K8S_* variables defined first in the container. */}}
{{- define "crossmodel.resourceAttributes" -}}
{{- $attrs := list "service.namespace=crossmodel" (printf "service.version=%s" .Chart.AppVersion) "k8s.namespace.name=$(K8S_NAMESPACE)" "k8s.pod.name=$(K8S_POD_NAME)" "k8s.node.name=$(K8S_NODE_NAME)" -}}
{{- range $k, $v := .Values.otel.resourceAttributes -}}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $attrs -}}
{{- end -}}

{{/* Pod-level fields shared by the components and the migration Jobs. */}}
{{- define "crossmodel.podCommon" -}}
automountServiceAccountToken: false
{{- /* Service links would inject e.g. CROSSMODEL_EDGE_PORT=tcp://… for a Service named
crossmodel-edge, which collides with the services' own settings prefix. */}}
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $c := index .root.Values.components .name }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
