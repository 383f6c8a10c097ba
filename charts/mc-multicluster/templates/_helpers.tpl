{{- define "mc.labels" -}}
{{- range $k, $v := .Values.commonLabels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
linkerd.io/extension: multicluster
{{- end -}}

{{- define "mc.saNames" -}}
{{- $names := list -}}
{{- $raw := .Values.remoteMirrorServiceAccountName -}}
{{- if kindIs "string" $raw }}{{ $raw = list $raw }}{{ end -}}
{{- range $raw }}{{ range (splitList "," .) }}{{ $n := trim . }}{{ if and $n (not (has $n $names)) }}{{ $names = append $names $n }}{{ end }}{{ end }}{{ end -}}
{{- toJson $names -}}
{{- end -}}
