{{/*
Names and labels.
*/}}
{{- define "seawall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "seawall.fullname" -}}
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

{{- define "seawall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seawall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "seawall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "seawall.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "seawall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "seawall.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "seawall.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The gateway config the replicas serve, as a dict: `.Values.config` with what the chart
owns filled in (the listener, the Redis stores, the audit directory and key file).
*/}}
{{- define "seawall.configDict" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $server := dict }}
{{- if hasKey $cfg "server" }}{{ $server = index $cfg "server" }}{{ end }}
{{- $_ := set $server "host" "0.0.0.0" }}
{{- $_ := set $server "port" (int .Values.port) }}
{{- $_ := set $cfg "server" $server }}
{{- if .Values.redis.url }}
{{- range $section := list "limits" "responses" }}
{{- $part := dict }}
{{- if hasKey $cfg $section }}{{ $part = index $cfg $section }}{{ end }}
{{- if not (hasKey $part "store") }}{{ $_ := set $part "store" $.Values.redis.url }}{{ end }}
{{- $_ := set $cfg $section $part }}
{{- end }}
{{- if hasKey $cfg "mcp" }}
{{- $mcp := index $cfg "mcp" }}
{{- $ledger := dict }}
{{- if hasKey $mcp "ledger" }}{{ $ledger = index $mcp "ledger" }}{{ end }}
{{- if not (hasKey $ledger "store") }}{{ $_ := set $ledger "store" $.Values.redis.url }}{{ end }}
{{- $_ := set $mcp "ledger" $ledger }}
{{- end }}
{{- end }}
{{- if include "seawall.auditEnabled" . }}
{{- $audit := index $cfg "audit" }}
{{- if and (hasKey $audit "directory") (ne (index $audit "directory") .Values.audit.mountPath) }}
{{- fail (printf "config.audit.directory (%s) must be audit.mountPath (%s), where the chart mounts the audit volume; leave it out" (index $audit "directory") .Values.audit.mountPath) }}
{{- end }}
{{- $_ := set $audit "directory" .Values.audit.mountPath }}
{{- $key := .Values.secrets.auditSigningKey }}
{{- if and (or $key.existingSecret $key.value) (not (hasKey $audit "signing_key")) (not (hasKey $audit "signing_key_file")) }}
{{- $_ := set $audit "signing_key_file" (printf "%s/%s" $key.mountPath $key.key) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{- define "seawall.auditEnabled" -}}
{{- if and (hasKey .Values.config "audit") (index .Values.config "audit").enabled }}true{{ end }}
{{- end }}

{{- define "seawall.auditKeyMounted" -}}
{{- $key := .Values.secrets.auditSigningKey }}
{{- if and (include "seawall.auditEnabled" .) (or $key.existingSecret $key.value) }}true{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds. After SIGTERM the gateway serves for server.drain_s, then
gives requests in flight (the longest stream included) server.shutdown_timeout_s; a
stream still open then gets the `stream_interrupted` event, with 5 s to deliver it
(INTERRUPT_GRACE_S, gateway/server/serve.py); with --workers > 1 the supervisor waits
5 s more for its workers (gateway/cli.py). That sum is the longest the gateway takes to
exit; the grace period is it plus terminationGraceMarginSeconds, so the kubelet's
SIGKILL never cuts a drain short. Defaults: 5 + 30 + 5 + 5 = 45.
*/}}
{{- define "seawall.gatewayExitSeconds" -}}
{{- $supervisor := gt (int .Values.workers) 1 | ternary 5 0 }}
{{- add (include "seawall.drainSeconds" . | int) (include "seawall.shutdownSeconds" . | int) 5 $supervisor }}
{{- end }}

{{- define "seawall.drainSeconds" -}}
{{- $server := dict }}
{{- if hasKey .Values.config "server" }}{{ $server = index .Values.config "server" }}{{ end }}
{{- ceil (hasKey $server "drain_s" | ternary (index $server "drain_s") 5) }}
{{- end }}

{{- define "seawall.shutdownSeconds" -}}
{{- $server := dict }}
{{- if hasKey .Values.config "server" }}{{ $server = index .Values.config "server" }}{{ end }}
{{- ceil (hasKey $server "shutdown_timeout_s" | ternary (index $server "shutdown_timeout_s") 30) }}
{{- end }}

{{- define "seawall.terminationGrace" -}}
{{- add (include "seawall.gatewayExitSeconds" . | int) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/*
The --config spec: the mounted ConfigMap directory, or etcd://[user:env:VAR@]endpoints/prefix/.
*/}}
{{- define "seawall.configSpec" -}}
{{- if eq .Values.configSource "etcd" }}
{{- if not .Values.etcd.endpoints }}
{{- fail "configSource etcd needs etcd.endpoints" }}
{{- end }}
{{- $auth := "" }}
{{- if .Values.etcd.username }}
{{- $auth = printf "%s:env:%s@" .Values.etcd.username .Values.etcd.passwordEnv }}
{{- end }}
{{- printf "etcd://%s%s%s" $auth (join "," .Values.etcd.endpoints) .Values.etcd.prefix }}
{{- else }}
{{- .Values.configMountPath }}
{{- end }}
{{- end }}

{{/*
The env groups of `secrets`, in a fixed order, and each one's Secret name.
*/}}
{{- define "seawall.secretGroups" -}}
clientKeys providerKeys receiptKeys stores
{{- end }}

{{- define "seawall.secretName" -}}
{{- $group := index .root.Values.secrets .group }}
{{- if $group.existingSecret }}
{{- $group.existingSecret }}
{{- else }}
{{- printf "%s-%s" (include "seawall.fullname" .root) (.group | kebabcase) }}
{{- end }}
{{- end }}

{{/*
Refusals of combinations that cannot work, with the reason.
*/}}
{{- define "seawall.validate" -}}
{{- $cfg := include "seawall.configDict" . | fromYaml }}
{{- $limits := dict }}
{{- if hasKey $cfg "limits" }}{{ $limits = index $cfg "limits" }}{{ end }}
{{- $store := hasKey $limits "store" | ternary (index $limits "store") "memory" }}
{{- if and (gt (int .Values.workers) 1) (eq $store "memory") }}
{{- fail "workers > 1 needs a shared limit store: set redis.url (or config.limits.store); the gateway refuses a memory store with several workers" }}
{{- end }}
{{- if and (include "seawall.auditEnabled" .) (eq .Values.audit.volume "pvc") (eq .Values.audit.persistence.accessMode "ReadWriteOnce") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "audit.volume pvc with ReadWriteOnce holds one pod: set replicaCount 1 without autoscaling, use ReadWriteMany, or audit.volume emptyDir (docs/kubernetes.md#the-audit-volume)" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.prometheusRule.groups) }}
{{- fail "prometheusRule.enabled needs prometheusRule.groups: the output of `seawall slo rules` (docs/kubernetes.md#slo-rules)" }}
{{- end }}
{{- end }}
