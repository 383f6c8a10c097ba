//! Kubeconfig files: one context per cluster, named after it, with the CA and client
//! certificate embedded, so the file works from any directory and with any client.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// One context of a kubeconfig.
pub(crate) struct Entry<'a> {
    pub(crate) context: &'a str,
    pub(crate) server: &'a str,
    pub(crate) ca_pem: &'a str,
    pub(crate) user: &'a str,
    pub(crate) credential: Credential<'a>,
}

/// How a kubeconfig user authenticates.
pub(crate) enum Credential<'a> {
    /// A client certificate and its key, PEM.
    Cert { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token.
    Token(&'a str),
}

/// Renders a kubeconfig with `entries`; the first is the current context.
pub(crate) fn render(entries: &[Entry<'_>]) -> Result<String, serde_yaml::Error> {
    let clusters: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"name": e.context, "cluster": {
                "server": e.server,
                "certificate-authority-data": STANDARD.encode(e.ca_pem),
            }})
        })
        .collect();
    let users: Vec<Value> = entries
        .iter()
        .map(|e| {
            let user = match e.credential {
                Credential::Cert { cert_pem, key_pem } => json!({
                    "client-certificate-data": STANDARD.encode(cert_pem),
                    "client-key-data": STANDARD.encode(key_pem),
                }),
                Credential::Token(token) => json!({"token": token}),
            };
            json!({"name": e.user, "user": user})
        })
        .collect();
    let contexts: Vec<Value> = entries
        .iter()
        .map(|e| json!({"name": e.context, "context": {"cluster": e.context, "user": e.user}}))
        .collect();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": entries.first().map_or("", |e| e.context),
        "preferences": {},
    });
    serde_yaml::to_string(&config)
}

/// Mints a client certificate for `user` in `groups` from `pki`, and writes `dir/<stem>.kubeconfig`
/// with it for `context` at `server`; returns the path.
pub(crate) fn write_for_identity(
    pki: &crate::certs::Pki,
    dir: &std::path::Path,
    stem: &str,
    cluster: (&str, &str),
    user: &str,
    groups: &[&str],
) -> crate::Result<std::path::PathBuf> {
    let (context, server) = cluster;
    let pair = pki.client(dir, stem, user, groups)?;
    let ca = pki.ca_pem();
    let text = render(&[Entry {
        context,
        server,
        ca_pem: &ca,
        user,
        credential: Credential::Cert {
            cert_pem: &pair.cert_pem,
            key_pem: &pair.key_pem,
        },
    }])
    .map_err(|e| crate::Error::Format {
        what: format!("{stem} kubeconfig"),
        detail: e.to_string(),
    })?;
    let path = dir.join(format!("{stem}.kubeconfig"));
    crate::certs::write(&path, &text)?;
    Ok(path)
}
