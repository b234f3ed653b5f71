//! `contextiq keys`: create, list and revoke API keys in the configured store.

use std::collections::BTreeSet;

use anyhow::Context;
use chrono::{Duration, Utc};
use clap::{Args, Subcommand};
use contextiq_core::{ApiKey, KeyService, NewApiKey, OrgId, Permission, Scope};
use contextiq_server::{Settings, open_stores};
use uuid::Uuid;

use crate::ConfigArgs;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, alone, on stdout (it is shown only this once).
    Create(CreateArgs),
    /// List keys (never their text).
    List(ListArgs),
    /// Revoke a key and every key minted under it: running servers refuse them within
    /// AUTH_KEY_CACHE_SECONDS.
    ///
    /// The store records the revocation at once, but a running server that used the key lately
    /// keeps trusting it for up to AUTH_KEY_CACHE_SECONDS (default 5) more. `DELETE
    /// /api/v1/keys/{id}` on a running server revokes the key there at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A name to recognise the key by.
    #[arg(long)]
    name: String,
    /// Comma-separated: SESSION_READ, SESSION_WRITE, MEMORY_READ, MEMORY_WRITE, ADMIN.
    #[arg(long, value_delimiter = ',', required = true)]
    permissions: Vec<Permission>,
    /// Confine the key to resources whose scope holds KEY=VALUE (repeatable).
    #[arg(long = "scope", value_parser = parse_scope_pair)]
    scope: Vec<(String, String)>,
    /// Lifetime, e.g. 30d, 12h, 15m, 3600s [default: no expiry].
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<Duration>,
    /// The org (tenant) of the key.
    #[arg(long, default_value = "default")]
    org: String,
    /// Requests per second for this key (burst twice that), instead of the default.
    #[arg(long)]
    rate_limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only keys of this org [default: every org].
    #[arg(long)]
    org: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The key's id (from `keys list`).
    id: Uuid,
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    let config = match &command {
        KeysCommand::Create(args) => &args.config,
        KeysCommand::List(args) => &args.config,
        KeysCommand::Revoke(args) => &args.config,
    };
    let settings = Settings::load(&config.overrides(None))?;
    let stores = open_stores(&settings).await?;
    let keys = KeyService::new(stores.keys.clone());
    let outcome = match command {
        KeysCommand::Create(args) => create(&keys, args).await,
        KeysCommand::List(args) => list(&keys, args).await,
        KeysCommand::Revoke(args) => {
            let revoked = keys.revoke(None, args.id, Utc::now()).await.context("cannot revoke the key")?;
            for key in revoked {
                eprintln!("revoked {} ({})", key.id, key.name);
            }
            Ok(())
        }
    };
    stores.sessions.close().await;
    outcome
}

async fn create(keys: &KeyService, args: CreateArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let scope: Scope = args.scope.into_iter().collect();
    let new = NewApiKey {
        org_id: OrgId::new(args.org),
        name: args.name,
        permissions: args.permissions.into_iter().collect::<BTreeSet<_>>(),
        scope: (!scope.is_empty()).then_some(scope),
        rate_limit_per_second: args.rate_limit,
        expires_at: args.expires_in.map(|lifetime| now + lifetime),
        parent_id: None,
    };
    let (key, record) = keys.create(new, now).await.context("cannot create the key")?;
    // The key alone on stdout, so scripts can capture it; the rest on stderr.
    println!("{key}");
    eprintln!("created key {} ({}) in org {}", record.id, record.name, record.org_id);
    Ok(())
}

async fn list(keys: &KeyService, args: ListArgs) -> anyhow::Result<()> {
    let org = args.org.map(OrgId::new);
    let listed = keys.list(org.as_ref()).await?;
    println!(
        "{:<36}  {:<12}  {:<20}  {:<10}  {:<8}  {:<40}  scope",
        "id", "org", "name", "prefix", "status", "permissions"
    );
    let now = Utc::now();
    for key in listed {
        println!(
            "{:<36}  {:<12}  {:<20}  {:<10}  {:<8}  {:<40}  {}",
            key.id,
            key.org_id.as_str(),
            key.name,
            key.prefix,
            status(&key, now),
            key.permissions.iter().map(|permission| permission.as_str()).collect::<Vec<_>>().join(","),
            key.scope.as_ref().map_or("-".to_owned(), |scope| serde_json::to_string(scope).unwrap_or_default()),
        );
    }
    Ok(())
}

fn status(key: &ApiKey, now: chrono::DateTime<Utc>) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if !key.is_usable(now) {
        "expired"
    } else {
        "active"
    }
}

fn parse_scope_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (amount, unit) = text.split_at(split);
    let amount: i64 = amount.parse().map_err(|_| format!("expected a number and a unit (d, h, m, s), got {text:?}"))?;
    let seconds = match unit {
        "d" => amount.checked_mul(86_400),
        "h" => amount.checked_mul(3_600),
        "m" => amount.checked_mul(60),
        "s" | "" => Some(amount),
        _ => None,
    }
    .filter(|seconds| (1..=10 * 366 * 86_400).contains(seconds))
    .ok_or_else(|| {
        format!("expected a lifetime between 1s and ten years, like 30d, 12h, 15m or 3600s; got {text:?}")
    })?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lifetimes() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_duration("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_duration("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_duration("3600").unwrap(), Duration::hours(1));
        for bad in ["", "d", "0s", "-5d", "5y", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_scope_pair("user_id=u1").is_ok());
        assert!(parse_scope_pair("user_id").is_err());
    }
}
