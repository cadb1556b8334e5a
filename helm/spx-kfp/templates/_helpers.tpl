{{/* Names */}}
{{- define "spx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spx.fullname" -}}
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

{{- define "spx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spx-kfp
{{- end -}}

{{/* selector labels: call with (dict "ctx" $ "component" "minio") */}}
{{- define "spx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spx.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spx.componentImage" -}}
{{- printf "%s:%s" .Values.images.component.repository .Values.images.component.tag -}}
{{- end -}}

{{- define "spx.servingImage" -}}
{{- printf "%s:%s" .Values.images.serving.repository .Values.images.serving.tag -}}
{{- end -}}

{{- define "spx.s3SecretName" -}}
{{- default (printf "%s-s3" (include "spx.fullname" .)) .Values.s3.existingSecret -}}
{{- end -}}

{{- define "spx.pgSecretName" -}}
{{- default (printf "%s-postgresql" (include "spx.fullname" .)) .Values.postgresql.existingSecret -}}
{{- end -}}

{{- define "spx.minioHost" -}}
{{- printf "%s-minio.%s.svc.cluster.local" (include "spx.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "spx.seaweedfsHost" -}}
{{- printf "%s-seaweedfs.%s.svc.cluster.local" (include "spx.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "spx.s3Endpoint" -}}
{{- if and .Values.minio.enabled .Values.seaweedfs.enabled -}}
{{- fail "minio.enabled and seaweedfs.enabled: pick one bundled object store (set minio.enabled=false)" -}}
{{- end -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "http://%s:9000" (include "spx.minioHost" .) -}}
{{- else if .Values.seaweedfs.enabled -}}
{{- printf "http://%s:%d" (include "spx.seaweedfsHost" .) (int .Values.seaweedfs.port) -}}
{{- else -}}
{{- fail "s3.endpoint is required when neither minio.enabled nor seaweedfs.enabled" -}}
{{- end -}}
{{- end -}}

{{/* host[:port] of the S3 endpoint, as KServe's s3-endpoint annotation wants it */}}
{{- define "spx.s3HostPort" -}}
{{- include "spx.s3Endpoint" . | trimPrefix "http://" | trimPrefix "https://" | trimSuffix "/" -}}
{{- end -}}

{{/* the Host headers the MLflow server accepts (MLflow >= 3.5 refuses others): its Service's names at any port,
     localhost for port-forwards, and mlflow.allowedHosts */}}
{{- define "spx.mlflowAllowedHosts" -}}
{{- $svc := printf "%s-mlflow" (include "spx.fullname" .) -}}
{{- $hosts := list -}}
{{- range $name := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) "localhost" "127.0.0.1" }}
{{- $hosts = append (append $hosts $name) (printf "%s:*" $name) -}}
{{- end -}}
{{- concat $hosts .Values.mlflow.allowedHosts | uniq | join "," -}}
{{- end -}}

{{- define "spx.mlflowUri" -}}
{{- printf "http://%s-mlflow.%s.svc.cluster.local:%d" (include "spx.fullname" .) .Release.Namespace (int .Values.mlflow.port) -}}
{{- end -}}

{{- define "spx.redisHost" -}}
{{- printf "%s-redis.%s.svc.cluster.local:6379" (include "spx.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "spx.pipelineRoot" -}}
{{- default (printf "s3://%s/pipeline-root" .Values.s3.bucket) .Values.pipeline.pipelineRoot -}}
{{- end -}}

{{- define "spx.runNamespace" -}}
{{- default .Release.Namespace .Values.pipeline.runNamespace -}}
{{- end -}}

{{/* a random secret value kept across upgrades: (dict "ctx" $ "secret" name "key" key "length" n) */}}
{{- define "spx.keptRandom" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end -}}

{{- define "spx.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "spx.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{- define "spx.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* the model annotation the deploy step reads: (dict "uri" .. "format" .. "version" ..) */}}
{{- define "spx.modelAnnotation" -}}
{{- dict "model_format" .format "model_version" (toString .version) "native_uri" .uri "variant" "" | toJson -}}
{{- end -}}

{{/* spec.predictor of the InferenceService: (dict "fn" fullname "isvc" .Values.inferenceService "model" model
     "canary" bool). A raw-mode canary predictor (spec.canary[].predictor, KServe >= 0.20) must be named, must
     name its model (the CRD requires model.name) and must not set maxReplicas (KServe's validation). */}}
{{- define "spx.predictor" -}}
{{ if .canary -}}
name: canary
{{ end -}}
serviceAccountName: {{ .fn }}-kserve-s3
minReplicas: {{ .isvc.minReplicas }}
{{- if not .canary }}
maxReplicas: {{ .isvc.maxReplicas }}
{{- end }}
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
  {{- if and .log .claim }}
  fsGroup: 10001
  {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if and .log .claim }}
  - name: prediction-log
    persistentVolumeClaim: {claimName: {{ .claim }}}
  {{- end }}
model:
  {{- if .canary }}
  name: kserve-container
  {{- end }}
  modelFormat:
    name: {{ .model.format }}
  protocolVersion: {{ .isvc.protocolVersion }}
  storageUri: {{ .model.storageUri | quote }}
  {{- with .isvc.runtime }}
  runtime: {{ . }}
  {{- end }}
  resources:
    {{- toYaml .isvc.predictorResources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    {{- if and .log .claim }}
    - {name: prediction-log, mountPath: /var/lib/spx/prediction-log}
    {{- end }}
  {{- if .log }}
  # no transformer: the predictor answers clients, so it writes the prediction log (S3 from the env)
  env:
    {{- include "spx.predictionLogEnv" (dict "on" true "isvc" .isvc "claim" .claim) | nindent 4 }}
  envFrom:
    - configMapRef: {name: {{ .fn }}-env}
    - secretRef: {name: {{ .s3Secret }}}
  {{- end }}
{{- end -}}

{{- /* The env of the one server that writes the prediction log (the transformer, else the predictor): on or
       off explicitly, and the InferenceService and namespace its rows carry (the canary loop filters on them). */}}
{{- define "spx.predictionLogEnv" -}}
- {name: SPX_PREDICTION_LOG, value: {{ .on | toString | quote }}}
- {name: SPX_INFERENCE_SERVICE, value: {{ .isvc.name | quote }}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- if and .on .claim }}
- {name: SPX_PREDICTION_LOG_DIR, value: /var/lib/spx/prediction-log}
{{- end }}
{{- end }}

{{- /* the claim the prediction log's writer keeps its local log on; empty: the pod's /tmp emptyDir (logging
       off, persistence off, or serverless mode where Knative's PVC features were not declared enabled) */}}
{{- define "spx.predictionLogClaim" -}}
{{- $pl := .Values.monitoring.predictionLog -}}
{{- if and $pl.enabled $pl.persistence.enabled (or (eq .Values.inferenceService.mode "raw") $pl.persistence.serverless) -}}
{{ include "spx.fullname" . }}-prediction-log
{{- end -}}
{{- end }}


{{/* the `providers` value of KFP's kfp-launcher ConfigMap for the chart's object store */}}
{{- define "spx.kfpLauncherProviders" -}}
s3:
  default:
    endpoint: {{ include "spx.s3HostPort" . }}
    region: {{ .Values.s3.region }}
    disableSSL: {{ not .Values.s3.useHttps }}
    forcePathStyle: true
    credentials:
      fromEnv: false
      secretRef:
        secretName: {{ include "spx.s3SecretName" . }}
        accessKeyKey: AWS_ACCESS_KEY_ID
        secretKeyKey: AWS_SECRET_ACCESS_KEY
{{- end -}}
