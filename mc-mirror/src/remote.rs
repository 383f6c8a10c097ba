//! The target cluster: building a client from a Link's credentials Secret and checking that it
//! answers.

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, Result};

/// The `reason` of [`Error::Credentials`] for a credentials Secret that does not exist.
pub(crate) const MISSING: &str = "does not exist";

/// Where a Link's credentials live.
#[derive(Clone, Debug)]
pub struct SecretRef {
    /// The Link name.
    pub link: String,
    /// The Links' namespace.
    pub namespace: String,
    /// `spec.clusterCredentialsSecret`.
    pub name: String,
}

impl SecretRef {
    fn error(&self, reason: impl Into<String>, fix: &'static str) -> Error {
        Error::Credentials {
            link: self.link.clone(),
            namespace: self.namespace.clone(),
            secret: self.name.clone(),
            reason: reason.into(),
            fix,
        }
    }

    /// The kubeconfig bytes held by `secret` under the key `kubeconfig`.
    pub fn kubeconfig_of(&self, secret: &Secret) -> Result<Vec<u8>> {
        let key = mc_core::labels::KUBECONFIG_KEY;
        if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return Ok(bytes.0.clone());
        }
        if let Some(text) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(text.clone().into_bytes());
        }
        Err(self.error(
            format!("has no key {key:?}"),
            "store the target cluster's kubeconfig under the key \"kubeconfig\" \
             (`mc multicluster link` writes it)",
        ))
    }

    /// The error for a Secret that does not exist.
    pub fn missing(&self) -> Error {
        self.error(
            MISSING,
            "create it (`mc multicluster link` writes it) or fix spec.clusterCredentialsSecret",
        )
    }

    /// A client for the target cluster from kubeconfig bytes; also returns the server URL.
    pub async fn client(&self, kubeconfig: &[u8]) -> Result<(Client, String)> {
        let (config, server) = self.config(kubeconfig).await?;
        Ok((self.client_of(config, Client::try_from)?, server))
    }

    /// A client built by `build` (e.g. [`crate::metrics::Metrics::counted_client`]) from a
    /// configuration [`SecretRef::config`] returned, with this Secret named in the error.
    pub fn client_of(
        &self,
        config: Config,
        build: impl FnOnce(Config) -> std::result::Result<Client, kube::Error>,
    ) -> Result<Client> {
        build(config).map_err(|e| {
            self.error(
                format!("no client can be built from the kubeconfig: {e}"),
                "check the CA and credentials in the kubeconfig",
            )
        })
    }

    /// The target cluster's client configuration from kubeconfig bytes, and its server URL.
    pub async fn config(&self, kubeconfig: &[u8]) -> Result<(Config, String)> {
        let text = std::str::from_utf8(kubeconfig).map_err(|e| {
            self.error(
                format!("key \"kubeconfig\" is not UTF-8 text: {e}"),
                "store a YAML kubeconfig, not a binary file",
            )
        })?;
        let kc = Kubeconfig::from_yaml(text).map_err(|e| {
            self.error(
                format!("key \"kubeconfig\" is not a valid kubeconfig: {e}"),
                "regenerate the Secret with `mc multicluster link`",
            )
        })?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| {
                self.error(
                    format!("the kubeconfig cannot be used: {e}"),
                    "the kubeconfig needs a current context with a server, a CA and a token \
                     or client certificate",
                )
            })?;
        let server = config.cluster_url.to_string();
        Ok((config, server))
    }

    /// Checks that the target answers (`/version`) with these credentials (and that they are
    /// accepted, by a cheap authenticated list). A 401 or 403 answer is an [`Error::Api`] (so
    /// the caller can tell rejected credentials and missing permissions from an outage); any
    /// other failure is [`Error::TargetUnreachable`].
    pub async fn check(&self, client: &Client, server: &str) -> Result<()> {
        let failed = |what: &str, e: kube::Error| match &e {
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => Error::api(
                format!("Link {}: {what} in the target cluster {server}", self.link),
                e,
            ),
            _ => Error::TargetUnreachable {
                link: self.link.clone(),
                server: server.to_string(),
                reason: format!("{what}: {e}"),
            },
        };
        client
            .apiserver_version()
            .await
            .map_err(|e| failed("reading /version", e))?;
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::all(client.clone());
        services
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .map_err(|e| failed("listing Services", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn sref() -> SecretRef {
        SecretRef {
            link: "east".into(),
            namespace: "mc".into(),
            name: "cluster-credentials-east".into(),
        }
    }

    #[test]
    fn a_secret_without_the_key_is_an_error_naming_it() {
        let s = Secret::default();
        let e = sref().kubeconfig_of(&s).unwrap_err().to_string();
        assert!(
            e.contains("mc/cluster-credentials-east") && e.contains("\"kubeconfig\""),
            "{e}"
        );
        let s = Secret {
            data: Some([("kubeconfig".to_string(), ByteString(b"x".to_vec()))].into()),
            ..Secret::default()
        };
        assert_eq!(sref().kubeconfig_of(&s).unwrap(), b"x");
    }

    #[tokio::test]
    async fn invalid_kubeconfigs_are_reported() {
        let e = sref()
            .client(b"not: [yaml")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a valid kubeconfig"), "{e}");
        let e = sref()
            .client(b"apiVersion: v1\nkind: Config\n")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cluster-credentials-east"), "{e}");
    }
}
