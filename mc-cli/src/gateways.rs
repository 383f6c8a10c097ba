//! `mc multicluster gateways`: `CLUSTER ALIVE NUM_SVC LATENCY` from Link status.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use mc_core::labels;
use mc_core::link::Link;
use serde_json::json;

use crate::kube::KubeArgs;
use crate::{Error, Result, emit};

/// Output of `gateways`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewaysFormat {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// Flags of `mc multicluster gateways`.
#[derive(Debug, clap::Args)]
pub struct GatewaysArgs {
    /// Only this linked cluster.
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: GatewaysFormat,
    /// Keep watching: re-read every 2 seconds and print the table again whenever it changes,
    /// until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// One row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    cluster: String,
    alive: bool,
    services: usize,
    latency: Option<u64>,
    p50: Option<u64>,
    p99: Option<u64>,
}

pub(crate) async fn gateways(
    args: GatewaysArgs,
    kube: &KubeArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = kube.connect(None).await?;
    let mut last: Option<Vec<Row>> = None;
    loop {
        let rows = collect(
            &cluster.client,
            &cluster.context,
            args.cluster_name.as_deref(),
        )
        .await?;
        if let Some(name) = &args.cluster_name
            && rows.is_empty()
        {
            return Err(Error::input(
                "--cluster-name",
                format!(
                    "no Link with a gateway targets {name:?} in context {}",
                    cluster.context
                ),
                "list the links with `kubectl get links -A`",
            ));
        }
        if last.as_ref() != Some(&rows) {
            if last.is_some() {
                emit(out, "\n")?;
            }
            emit(out, &format(&rows, args.output))?;
            last = Some(rows);
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn collect(client: &kube::Client, context: &str, only: Option<&str>) -> Result<Vec<Row>> {
    let links: kube::Api<Link> = kube::Api::all(client.clone());
    let links = links
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::api(format!("list Links (context {context})"), e))?;
    let services: kube::Api<Service> = kube::Api::all(client.clone());
    let mut rows = Vec::new();
    for link in links.items {
        let name = link
            .spec
            .target_cluster_name
            .clone()
            .or(link.metadata.name.clone())
            .unwrap_or_default();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        if link
            .spec
            .gateway_address
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            continue;
        }
        let selector = format!(
            "{}=true,{}={name}",
            labels::MIRRORED_SERVICE,
            labels::CLUSTER_NAME
        );
        let count = services
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::api(format!("list mirrors of {name} (context {context})"), e))?
            .items
            .len();
        // status.gateway, else the annotation (upstream's CRD prunes status.gateway).
        let gw = mc_core::link::GatewayStatus::of_link(&link);
        rows.push(Row {
            cluster: name,
            alive: gw.as_ref().is_some_and(|g| g.alive),
            services: count,
            latency: gw.as_ref().and_then(|g| g.latency_ms),
            p50: gw.as_ref().and_then(|g| g.p50_ms),
            p99: gw.as_ref().and_then(|g| g.p99_ms),
        });
    }
    rows.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Ok(rows)
}

fn ms(v: Option<u64>, alive: bool) -> String {
    match v {
        Some(v) if alive => format!("{v}ms"),
        _ => "-".to_owned(),
    }
}

fn format(rows: &[Row], format: GatewaysFormat) -> String {
    match format {
        GatewaysFormat::Json => {
            let items: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "clusterName": r.cluster,
                        "alive": r.alive,
                        "numberOfServices": r.services,
                        "latency": r.latency,
                        "p50": r.p50,
                        "p99": r.p99,
                    })
                })
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            )
        }
        GatewaysFormat::Table => {
            let mut text = format!(
                "{:<20} {:<6} {:<8} {:<8} {:<8} {:<8}\n",
                "CLUSTER", "ALIVE", "NUM_SVC", "LATENCY", "P50", "P99"
            );
            for r in rows {
                text.push_str(&format!(
                    "{:<20} {:<6} {:<8} {:<8} {:<8} {:<8}\n",
                    r.cluster,
                    if r.alive { "True" } else { "False" },
                    r.services,
                    ms(r.latency, r.alive),
                    ms(r.p50, r.alive),
                    ms(r.p99, r.alive)
                ));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn table_shows_dash_when_dead_and_json_has_upstream_fields() {
        let rows = vec![
            Row {
                cluster: "east".into(),
                alive: true,
                services: 2,
                latency: Some(3),
                p50: Some(2),
                p99: Some(9),
            },
            Row {
                cluster: "west".into(),
                alive: false,
                services: 0,
                latency: Some(7),
                p50: None,
                p99: None,
            },
        ];
        let t = format(&rows, GatewaysFormat::Table);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CLUSTER"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["east", "True", "2", "3ms", "2ms", "9ms"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["west", "False", "0", "-", "-", "-"]
        );
        let j: serde_json::Value =
            serde_json::from_str(&format(&rows, GatewaysFormat::Json)).unwrap();
        assert_eq!(j[0]["clusterName"], "east");
        assert_eq!(j[0]["numberOfServices"], 2);
        assert_eq!(j[1]["alive"], false);
    }
}
