{{/* Names */}}
{{- define "spate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spate.headless" -}}
{{- printf "%s-headless" (include "spate.fullname" .) -}}
{{- end -}}

{{- define "spate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "spate.labels" -}}
helm.sh/chart: {{ include "spate.chart" . }}
{{ include "spate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spate
{{- end -}}

{{- define "spate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spate.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* DNS name of pod N through the headless Service: <fullname>-N.<headless>.<ns>.svc.<domain> */}}
{{- define "spate.podHost" -}}
{{- $ := index . 0 -}}
{{- $i := index . 1 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "spate.fullname" $) (int $i) (include "spate.headless" $) $.Release.Namespace $.Values.cluster.clusterDomain -}}
{{- end -}}

{{/* Zone of ordinal N as written into cluster.peers. */}}
{{- define "spate.peerZone" -}}
{{- $ := index . 0 -}}
{{- $i := index . 1 -}}
{{- if eq $.Values.zones.source "explicit" -}}
{{- index $.Values.zones.explicit (toString $i) -}}
{{- else -}}
unknown
{{- end -}}
{{- end -}}

{{- define "spate.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "spate.fullname" .) -}}
{{- else -}}
{{- .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "spate.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-auth" (include "spate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Cross-field checks: fail early with a readable message. */}}
{{- define "spate.validate" -}}
{{- $n := int .Values.replicaCount -}}
{{- if eq .Values.zones.source "explicit" -}}
{{- range $i := until $n -}}
{{- if not (hasKey $.Values.zones.explicit (toString $i)) -}}
{{- fail (printf "zones.source=explicit: zones.explicit has no zone for ordinal %d (replicaCount=%d)" $i $n) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.certManager.enabled) (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled: set tls.existingSecret or enable tls.certManager" -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.enabled: set tls.certManager.issuerRef.name" -}}
{{- end -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (or (not .Values.auth.accessKeyId) (not .Values.auth.secretAccessKey)) -}}
{{- fail "auth.enabled: set auth.existingSecret, or auth.accessKeyId and auth.secretAccessKey" -}}
{{- end -}}
{{- if and .Values.drain.enabled (le (int .Values.terminationGracePeriodSeconds) (int .Values.drain.timeoutSeconds)) -}}
{{- fail "terminationGracePeriodSeconds must exceed drain.timeoutSeconds (the node needs time to stop after draining)" -}}
{{- end -}}
{{- if lt $n (int .Values.cluster.voters) -}}
{{- fail (printf "replicaCount %d is below cluster.voters %d: every initial voter needs a pod" $n (int .Values.cluster.voters)) -}}
{{- end -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "spate.fullname" .) -}}
{{- if and $sts (not .Values.cluster.allowReplicaChange) -}}
{{- if lt $n (int $sts.spec.replicas) -}}
{{- fail (printf "replicaCount %d -> %d: scaling in is not supported yet (nodes are not decommissioned, so their replicas would be lost). See docs/operations.md; set cluster.allowReplicaChange=true to override." (int $sts.spec.replicas) $n) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The container start script: node id from the pod ordinal, zone per zones.source. */}}
{{- define "spate.startScript" -}}
set -eu
# Node id = StatefulSet ordinal, the suffix of the pod name (POD_NAME from the Downward API;
# works on every Kubernetes version, unlike the apps.kubernetes.io/pod-index label, 1.28+).
ordinal="${POD_NAME##*-}"
case "$ordinal" in ''|*[!0-9]*) echo "spate: cannot derive the ordinal from pod name '$POD_NAME'" >&2; exit 1 ;; esac
export SPATE_NODE__ID="$ordinal"
# The address the other nodes dial; ordinals >= cluster.voters ({{ int .Values.cluster.voters }}) are not in
# cluster.peers and join the running cluster as non-voters with it.
export SPATE_CLUSTER__ADVERTISE="${POD_NAME}.{{ include "spate.headless" . }}.{{ .Release.Namespace }}.svc.{{ .Values.cluster.clusterDomain }}:{{ .Values.ports.peer }}"
{{- if eq .Values.zones.source "explicit" }}
case "$ordinal" in
{{- range $i := until (int .Values.replicaCount) }}
  {{ $i }}) SPATE_NODE__ZONE={{ index $.Values.zones.explicit (toString $i) | squote }} ;;
{{- end }}
  *) echo "spate: zones.explicit has no zone for ordinal $ordinal" >&2; exit 1 ;;
esac
{{- else if eq .Values.zones.source "nodeLabel" }}
SPATE_NODE__ZONE="$(cat /var/run/spate/zone/zone)"
{{- end }}
if [ -z "${SPATE_NODE__ZONE:-}" ]; then echo "spate: no zone for this node" >&2; exit 1; fi
export SPATE_NODE__ZONE
echo "spate: pod $POD_NAME -> node id $SPATE_NODE__ID, zone $SPATE_NODE__ZONE" >&2
exec /usr/local/bin/spate server --config /etc/spate/spate.toml
{{- end -}}

{{/* initContainer script: the zone label of this pod's Node, read with the pod's own token. */}}
{{- define "spate.zoneScript" -}}
set -eu
sa=/var/run/secrets/spate-zone
api="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"
label={{ .Values.zones.nodeLabel | quote }}
body="$(curl -sS --fail --max-time 10 --retry 5 --retry-delay 2 --retry-all-errors \
  --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
  "$api/api/v1/nodes/${NODE_NAME}")"
# The label value, from compact or pretty-printed JSON (no jq in the image).
zone="$(printf '%s' "$body" | tr -d '\n' | grep -o "\"$label\": *\"[^\"]*\"" | head -n 1 | sed 's/.*: *"\([^"]*\)"$/\1/' || true)"
if [ -z "$zone" ]; then
  zone={{ .Values.zones.fallback | squote }}
  if [ -z "$zone" ]; then
    echo "spate-zone: node ${NODE_NAME} has no label $label and zones.fallback is empty" >&2
    exit 1
  fi
  echo "spate-zone: node ${NODE_NAME} has no label $label; using fallback '$zone'" >&2
fi
printf '%s' "$zone" > /var/run/spate/zone/zone
echo "spate-zone: node ${NODE_NAME} is in zone $zone" >&2
{{- end -}}

{{/* preStop: move the leadership of every Raft group (shards and the control plane) away, bounded
by drain.timeoutSeconds. POST /v1/drain answers 200 once this node leads no group, 503 while it
still leads some. */}}
{{- define "spate.drainScript" -}}
deadline=$(( $(date +%s) + {{ int .Values.drain.timeoutSeconds }} ))
while :; do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST http://127.0.0.1:{{ .Values.ports.admin }}/v1/drain || true)"
  case "$code" in
    200) echo "spate: drained" >&2; exit 0 ;;
    404|405|501) echo "spate: this node has no /v1/drain; stopping without draining" >&2; exit 0 ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then echo "spate: drain timed out (last status $code)" >&2; exit 0; fi
  sleep 2
done
{{- end -}}
