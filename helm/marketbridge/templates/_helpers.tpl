{{/*
Names, labels and the values checks that JSON Schema cannot express with a clear message.
*/}}

{{- define "marketbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix: <release>-<chart>, or <release> when it already names the chart. */}}
{{- define "marketbridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "marketbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "marketbridge.labels" -}}
helm.sh/chart: {{ include "marketbridge.chart" . }}
app.kubernetes.io/name: {{ include "marketbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: marketbridge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component (bridge, cache-service, redis): call with (dict "ctx" $ "component" "bridge"). */}}
{{- define "marketbridge.componentLabels" -}}
{{ include "marketbridge.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component: stable across upgrades, so never the version. */}}
{{- define "marketbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marketbridge.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "marketbridge.bridge.fullname" -}}
{{- printf "%s-bridge" (include "marketbridge.fullname" .) }}
{{- end }}

{{- define "marketbridge.cache.fullname" -}}
{{- printf "%s-cache-service" (include "marketbridge.fullname" .) }}
{{- end }}

{{- define "marketbridge.redis.fullname" -}}
{{- printf "%s-redis" (include "marketbridge.fullname" .) }}
{{- end }}

{{- define "marketbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "marketbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from (dict "image" .Values.image "default" .Chart.AppVersion). */}}
{{- define "marketbridge.imageRef" -}}
{{- $tag := default .default .image.tag | toString }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "marketbridge.image" -}}
{{- include "marketbridge.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{- define "marketbridge.redis.image" -}}
{{- include "marketbridge.imageRef" (dict "image" .Values.redis.image "default" "") }}
{{- end }}

{{/* The in-cluster DNS name of a Service. */}}
{{- define "marketbridge.svcHost" -}}
{{- printf "%s.%s.svc.%s" .name .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{- define "marketbridge.cache.headless" -}}
{{- printf "%s-headless" (include "marketbridge.cache.fullname" .) }}
{{- end }}

{{/* Whose user metadata the cache service believes under mTLS (CACHE_USER_METADATA_PEERS): the
bridge's certificate names, or, when the bridge presents the cache service's own certificate
(no tls.bridge.secretName), the name that certificate must carry. */}}
{{- define "marketbridge.bridge.tlsIdentity" -}}
{{- if .Values.tls.bridge.identity }}{{ .Values.tls.bridge.identity }}
{{- else }}{{ include "marketbridge.svcHost" (dict "ctx" . "name" (include "marketbridge.cache.headless" .)) }}
{{- end }}
{{- end }}

{{/* The bridge's upstream: dns:/// over the headless Service, so gRPC balances across pods. */}}
{{- define "marketbridge.grpcTarget" -}}
{{- printf "dns:///%s:%d" (include "marketbridge.svcHost" (dict "ctx" . "name" (include "marketbridge.cache.headless" .))) (int .Values.cacheService.port) }}
{{- end }}

{{- define "marketbridge.redis.headless" -}}
{{- printf "%s-headless" (include "marketbridge.redis.fullname" .) }}
{{- end }}

{{/* The host name of Redis pod N (sentinel mode): call with (dict "ctx" $ "index" N). */}}
{{- define "marketbridge.redis.podHost" -}}
{{- printf "%s-%d.%s" (include "marketbridge.redis.fullname" .ctx) (int .index) (include "marketbridge.svcHost" (dict "ctx" .ctx "name" (include "marketbridge.redis.headless" .ctx))) }}
{{- end }}

{{/*
The cache service's Redis URL for the in-chart Redis and for an external Redis Cluster
(external mode reads its own). With auth, the password comes from the REDIS_PASSWORD variable
set just before it (Kubernetes expands $(VAR) in env values), so it never appears in the pod spec.
*/}}
{{- define "marketbridge.redisUrl" -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" .Values.redis.auth.enabled }}
{{- if eq .Values.redis.mode "cluster" }}
{{- $c := .Values.redis.cluster }}
{{- $auth = ternary (printf "%s:$(REDIS_PASSWORD)@" $c.username) (ternary (printf "%s@" $c.username) "" (ne $c.username "")) (ne $c.existingSecret "") }}
{{- printf "redis+cluster://%s%s" $auth (join "," $c.nodes) }}{{ if $c.tls }}/?tls=1{{ end }}
{{- else if eq .Values.redis.mode "sentinel" }}
{{- $hosts := list }}
{{- range $i := until (int .Values.redis.sentinel.replicas) }}
{{- $hosts = append $hosts (printf "%s:26379" (include "marketbridge.redis.podHost" (dict "ctx" $ "index" $i))) }}
{{- end }}
{{- printf "redis+sentinel://%s%s/%s/%d" $auth (join "," $hosts) .Values.redis.sentinel.masterName (int .Values.redis.db) }}
{{- if .Values.redis.auth.enabled }}?sentinel_password=$(REDIS_PASSWORD){{ end }}
{{- else }}
{{- printf "redis://%s%s:6379/%d" $auth (include "marketbridge.svcHost" (dict "ctx" . "name" (include "marketbridge.redis.fullname" .))) (int .Values.redis.db) }}
{{- end }}
{{- end }}

{{- define "marketbridge.redis.authSecretName" -}}
{{- default (printf "%s-redis-auth" (include "marketbridge.fullname" .)) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "marketbridge.redis.authSecretKey" -}}
{{- ternary .Values.redis.auth.existingSecretKey "redis-password" (ne .Values.redis.auth.existingSecret "") }}
{{- end }}

{{/* REDIS_PASSWORD (and REDISCLI_AUTH for redis-cli in probes) from the auth Secret:
(dict "ctx" $ "cli" true). */}}
{{- define "marketbridge.redis.passwordEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "marketbridge.redis.authSecretName" .ctx }}
      key: {{ include "marketbridge.redis.authSecretKey" .ctx }}
{{- if .cli }}
- name: REDISCLI_AUTH
  value: $(REDIS_PASSWORD)
{{- end }}
{{- end }}

{{/* The JWT Secret's name and whether it holds a public key rather than a shared secret. */}}
{{- define "marketbridge.jwt.secretName" -}}
{{- default (printf "%s-jwt" (include "marketbridge.fullname" .)) .Values.jwt.existingSecret }}
{{- end }}

{{- define "marketbridge.jwt.usesPublicKey" -}}
{{- if .Values.jwt.existingSecret }}
{{- if .Values.jwt.existingSecretPublicKeyKey }}true{{ end }}
{{- else if .Values.jwt.publicKey }}true{{ end }}
{{- end }}

{{- define "marketbridge.jwt.publicKeyKey" -}}
{{- if .Values.jwt.existingSecret }}{{ .Values.jwt.existingSecretPublicKeyKey }}{{ else }}jwt-public-key{{ end }}
{{- end }}

{{- define "marketbridge.jwt.secretKey" -}}
{{- if .Values.jwt.existingSecret }}{{ .Values.jwt.existingSecretKey }}{{ else }}jwt-secret{{ end }}
{{- end }}

{{- define "marketbridge.bridge.terminationGrace" -}}
{{- $b := .Values.bridge }}
{{- if kindIs "invalid" $b.terminationGracePeriodSeconds }}
{{- add $b.preStopSleepSeconds (ceil $b.config.shutdownGrace) 10 }}
{{- else }}
{{- $b.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Cross-field checks, each failing with one line that says what to set. Included by every
template so `helm template` of any single file fails the same way.
*/}}
{{- define "marketbridge.validate" -}}
{{- $v := .Values }}
{{- if eq $v.bridge.auth "jwt" }}
{{- $given := list }}
{{- if $v.jwt.secret }}{{ $given = append $given "jwt.secret" }}{{ end }}
{{- if $v.jwt.publicKey }}{{ $given = append $given "jwt.publicKey" }}{{ end }}
{{- if $v.jwt.existingSecret }}{{ $given = append $given "jwt.existingSecret" }}{{ end }}
{{- if $v.jwt.jwksUrl }}{{ $given = append $given "jwt.jwksUrl" }}{{ end }}
{{- if eq (len $given) 0 }}
{{- fail "marketbridge: a JWT key is required: set jwt.secret (HS256, 32+ characters), jwt.publicKey (PEM, RS256/ES256), jwt.existingSecret or jwt.jwksUrl (RS256/ES256 by kid)" }}
{{- end }}
{{- if gt (len $given) 1 }}
{{- fail (printf "marketbridge: set only one of jwt.secret, jwt.publicKey, jwt.existingSecret, jwt.jwksUrl (got %s)" (join ", " $given)) }}
{{- end }}
{{- if and $v.jwt.jwksCaSecret (not (hasPrefix "https://" $v.jwt.jwksUrl)) }}
{{- fail "marketbridge: jwt.jwksCaSecret needs an https:// jwt.jwksUrl" }}
{{- end }}
{{- if and $v.jwt.secret (lt (len $v.jwt.secret) 32) }}
{{- fail "marketbridge: jwt.secret must be at least 32 characters (HS256 keys shorter than the hash are brute-forceable)" }}
{{- end }}
{{- $hmac := list }}{{- $keyed := list }}
{{- range $alg := splitList " " $v.jwt.algorithms }}
{{- if hasPrefix "HS" $alg }}{{ $hmac = append $hmac $alg }}{{ else if $alg }}{{ $keyed = append $keyed $alg }}{{ end }}
{{- end }}
{{- if $v.jwt.jwksUrl }}
{{- $other := without (concat $hmac $keyed) "RS256" "ES256" }}
{{- if $other }}
{{- fail (printf "marketbridge: jwt.algorithms %s cannot be used with jwt.jwksUrl (RS256, ES256 only)" (join " " $other)) }}
{{- end }}
{{- else }}
{{- if and (include "marketbridge.jwt.usesPublicKey" $) $hmac }}
{{- fail (printf "marketbridge: jwt.algorithms %s need a shared secret, but the bridge gets a public key" (join " " $hmac)) }}
{{- end }}
{{- if and (not (include "marketbridge.jwt.usesPublicKey" $)) $keyed }}
{{- fail (printf "marketbridge: jwt.algorithms %s need a public key (jwt.publicKey), but the bridge gets a shared secret" (join " " $keyed)) }}
{{- end }}
{{- end }}
{{- if and $v.jwt.publicKey (not (contains "-----BEGIN" $v.jwt.publicKey)) }}
{{- fail "marketbridge: jwt.publicKey must be a PEM public key (-----BEGIN PUBLIC KEY-----...)" }}
{{- end }}
{{- end }}
{{- range $what, $image := dict "image" $v.image "redis.image" $v.redis.image }}
{{- if and (eq (toString $image.tag) "latest") (not $image.digest) }}
{{- fail (printf "marketbridge: %s.tag must not be \"latest\": pin a version (or %s.digest) so every pod runs the same build" $what $what) }}
{{- end }}
{{- end }}
{{- $grace := int (include "marketbridge.bridge.terminationGrace" .) }}
{{- $drain := add $v.bridge.preStopSleepSeconds (ceil $v.bridge.config.shutdownGrace) }}
{{- if le $grace (int $drain) }}
{{- fail (printf "marketbridge: bridge.terminationGracePeriodSeconds (%d) must exceed bridge.preStopSleepSeconds + bridge.config.shutdownGrace (%d), or Kubernetes kills the bridge mid-drain" $grace (int $drain)) }}
{{- end }}
{{- $cacheDrain := add $v.cacheService.preStopSleepSeconds (ceil $v.cacheService.config.shutdownGrace) }}
{{- if le (int $v.cacheService.terminationGracePeriodSeconds) (int $cacheDrain) }}
{{- fail (printf "marketbridge: cacheService.terminationGracePeriodSeconds must exceed cacheService.preStopSleepSeconds + cacheService.config.shutdownGrace (%d)" (int $cacheDrain)) }}
{{- end }}
{{- if and (eq $v.redis.mode "external") (not $v.redis.external.url) (not $v.redis.external.existingSecret) }}
{{- fail "marketbridge: redis.mode=external needs redis.external.url or redis.external.existingSecret" }}
{{- end }}
{{- if and (eq $v.redis.mode "cluster") (not $v.redis.cluster.nodes) }}
{{- fail "marketbridge: redis.mode=cluster needs redis.cluster.nodes (host:port of one or more of the cluster's nodes)" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.cacheService.secretName) }}
{{- fail "marketbridge: tls.enabled needs tls.cacheService.secretName (a Secret with tls.crt, tls.key, ca.crt)" }}
{{- end }}
{{- if and $v.tls.enabled $v.tls.requireClientCert $v.tls.bridge.secretName (not $v.tls.bridge.identity) }}
{{- fail "marketbridge: tls.bridge.secretName needs tls.bridge.identity (the CN or a SAN of the bridge's client certificate: the one peer the cache service takes x-user-id from)" }}
{{- end }}
{{- range $name, $c := dict "bridge" $v.bridge "cacheService" $v.cacheService }}
{{- if and $c.pdb.enabled (not (kindIs "invalid" $c.pdb.minAvailable)) (not (kindIs "invalid" $c.pdb.maxUnavailable)) }}
{{- fail (printf "marketbridge: set only one of %s.pdb.minAvailable and %s.pdb.maxUnavailable" $name $name) }}
{{- end }}
{{- if and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) }}
{{- fail (printf "marketbridge: %s.autoscaling.minReplicas must not exceed maxReplicas" $name) }}
{{- end }}
{{- end }}
{{- if and (eq $v.redis.mode "sentinel") (gt (int $v.redis.sentinel.quorum) (int $v.redis.sentinel.replicas)) }}
{{- fail "marketbridge: redis.sentinel.quorum must not exceed redis.sentinel.replicas" }}
{{- end }}
{{- end }}

{{/* Pod scheduling spread for one component: (dict "ctx" $ "component" "bridge" "cfg" .Values.bridge). */}}
{{- define "marketbridge.scheduling" -}}
{{- $sel := include "marketbridge.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .cfg.affinity }}
affinity:
  {{- toYaml .cfg.affinity | nindent 2 }}
{{- else if eq .cfg.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- toYaml $sel | nindent 12 }}
{{- else if eq .cfg.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $sel | nindent 14 }}
{{- end }}
{{- if hasKey .cfg "topologySpreadConstraints" }}
topologySpreadConstraints:
{{- if .cfg.topologySpreadConstraints }}
  {{- toYaml .cfg.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- toYaml $sel | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- toYaml $sel | nindent 8 }}
{{- end }}
{{- end }}
{{- with .cfg.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* The restricted security context every container gets. */}}
{{- define "marketbridge.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* NetworkPolicy egress rule for DNS lookups. */}}
{{- define "marketbridge.np.dns" -}}
{{- if .Values.networkPolicy.allowDNS }}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
{{- end }}


{{/*
The bridge's --allowed-origins: bridge.config.allowedOrigins when given, else the origins of the
ingress hosts (https when ingress.tls lists the host), else "*" (no ingress: local use).
*/}}
{{- define "marketbridge.allowedOrigins" -}}
{{- $given := .Values.bridge.config.allowedOrigins | default list -}}
{{- if $given -}}
{{- join "," $given -}}
{{- else if .Values.ingress.enabled -}}
{{- $tls := list -}}
{{- range .Values.ingress.tls }}{{- range .hosts }}{{- $tls = append $tls . -}}{{- end }}{{- end -}}
{{- $origins := list -}}
{{- range .Values.ingress.hosts -}}
{{- $origins = append $origins (printf "%s://%s" (ternary "https" "http" (has .host $tls)) .host) -}}
{{- end -}}
{{- join "," $origins -}}
{{- else -}}
*
{{- end -}}
{{- end -}}
