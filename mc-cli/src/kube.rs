//! Kubernetes plumbing: `--kubeconfig` / `--context`, clients, and small API helpers.

use std::path::PathBuf;

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::{Error, Result};

/// Where to find the cluster: kubectl's `--kubeconfig` and `--context`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// A connected cluster: its client and the context it came from.
pub struct Cluster {
    /// The API client.
    pub client: kube::Client,
    /// The context name (for messages).
    pub context: String,
    /// The kubeconfig it was loaded from.
    pub kubeconfig: Kubeconfig,
}

impl KubeArgs {
    /// Reads the kubeconfig file.
    pub fn load(&self) -> Result<Kubeconfig> {
        let loaded = match &self.kubeconfig {
            Some(path) => {
                // KUBECONFIG may be a list; take the first existing file as kubectl does for writes.
                let path = std::env::split_paths(path)
                    .find(|p| p.exists())
                    .unwrap_or_else(|| path.clone());
                Kubeconfig::read_from(&path).map_err(|e| Error::Kubeconfig {
                    context: None,
                    reason: format!("{}: {e}", path.display()),
                })?
            }
            None => Kubeconfig::read().map_err(|e| Error::Kubeconfig {
                context: None,
                reason: e.to_string(),
            })?,
        };
        Ok(loaded)
    }

    /// The context to use: `override_context`, else `--context`, else the current one.
    pub fn context_name(&self, kc: &Kubeconfig, override_context: Option<&str>) -> Result<String> {
        let name = override_context
            .map(str::to_owned)
            .or_else(|| self.context.clone())
            .or_else(|| kc.current_context.clone())
            .ok_or_else(|| Error::Kubeconfig {
                context: None,
                reason: "no --context given and the kubeconfig has no current-context".to_owned(),
            })?;
        if !kc.contexts.iter().any(|c| c.name == name) {
            return Err(Error::Kubeconfig {
                context: Some(name),
                reason: format!(
                    "no such context (known: {})",
                    kc.contexts
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(name)
    }

    /// Connects to the cluster of `override_context` (or `--context`, or the current context).
    pub async fn connect(&self, override_context: Option<&str>) -> Result<Cluster> {
        let kubeconfig = self.load()?;
        let context = self.context_name(&kubeconfig, override_context)?;
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
            .await
            .map_err(|e| Error::Kubeconfig {
                context: Some(context.clone()),
                reason: e.to_string(),
            })?;
        let client = kube::Client::try_from(config).map_err(|e| Error::Kubeconfig {
            context: Some(context.clone()),
            reason: e.to_string(),
        })?;
        Ok(Cluster {
            client,
            context,
            kubeconfig,
        })
    }
}

/// Server URL and CA (base64 PEM) of a context's cluster, and whether TLS verification is off.
pub struct ClusterEndpoint {
    /// Cluster entry name.
    pub name: String,
    /// The API server URL.
    pub server: String,
    /// Base64 of the CA PEM, if any.
    pub ca_data: Option<String>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
}

/// The cluster endpoint of `context` in `kc`, with a CA file read into base64 data.
pub fn endpoint(kc: &Kubeconfig, context: &str) -> Result<ClusterEndpoint> {
    let err = |reason: String| Error::Kubeconfig {
        context: Some(context.to_owned()),
        reason,
    };
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| err("no such context".to_owned()))?;
    let cluster_name = ctx.cluster.clone();
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            err(format!(
                "its cluster {cluster_name:?} is not in the kubeconfig"
            ))
        })?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| err(format!("cluster {cluster_name:?} has no server")))?;
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        (None, None) => None,
    };
    Ok(ClusterEndpoint {
        name: cluster_name,
        server,
        ca_data,
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

/// A kubeconfig (YAML) for `endpoint` that authenticates as `user` with a bearer `token`.
pub fn token_kubeconfig(
    endpoint: &ClusterEndpoint,
    context: &str,
    user: &str,
    token: &str,
) -> Result<String> {
    let mut cluster = json!({"server": endpoint.server});
    if let Some(ca) = &endpoint.ca_data {
        cluster["certificate-authority-data"] = json!(ca);
    }
    if endpoint.insecure {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": endpoint.name, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": endpoint.name, "user": user}}],
        "current-context": context,
    });
    serde_yaml::to_string(&config)
        .map_err(|e| Error::input("kubeconfig", e.to_string(), "report this as a bug"))
}

/// `Ok(None)` for a 404, the object otherwise.
pub async fn get_opt<K>(
    api: &kube::Api<K>,
    name: &str,
    action: impl Into<String>,
) -> Result<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(v) => Ok(v),
        Err(e) => Err(Error::api(action, e)),
    }
}

/// References to the objects of one kind (`group`, `version`, `kind`, `plural`) in `namespace`
/// (or everywhere) that match a label selector. A kind the server does not serve gives none.
pub async fn list_refs(
    client: &kube::Client,
    gvk: (&str, &str, &str),
    plural: &str,
    namespace: Option<&str>,
    selector: &str,
) -> Result<Vec<mc_core::render::ObjectRef>> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
    let (group, version, kind) = gvk;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: kube::Api<DynamicObject> = match namespace {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    };
    let list = match api
        .list_metadata(&ListParams::default().labels(selector))
        .await
    {
        Ok(list) => list,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(Error::api(format!("list {plural} labelled {selector}"), e)),
    };
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| {
            Some(mc_core::render::ObjectRef {
                api_version: ar.api_version.clone(),
                kind: kind.to_owned(),
                namespace: o.metadata.namespace.clone(),
                name: o.metadata.name?,
            })
        })
        .collect())
}

/// Whether an error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The `linkerd-config` ConfigMap of `namespace`, parsed; `None` when it does not exist.
pub async fn linkerd_config(
    client: &kube::Client,
    namespace: &str,
    context: &str,
) -> Result<Option<mc_core::trust::LinkerdConfig>> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    let action = format!("get ConfigMap {namespace}/linkerd-config (context {context})");
    let Some(cm) = get_opt(&api, "linkerd-config", action).await? else {
        return Ok(None);
    };
    let values = cm
        .data
        .as_ref()
        .and_then(|d| d.get("values"))
        .ok_or_else(|| {
            Error::input(
                format!("ConfigMap {namespace}/linkerd-config (context {context})"),
                "has no `values` key",
                "reinstall the Linkerd control plane, or fix the ConfigMap",
            )
        })?;
    Ok(Some(mc_core::trust::LinkerdConfig::from_values_yaml(
        values,
    )?))
}
