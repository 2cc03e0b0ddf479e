//! `omium keys`: issue, list and revoke the API keys of `omium serve`.

use std::io::Write;
use std::path::{Path, PathBuf};

use omium_core::keys::{self, ApiKey, KeySpec};
use omium_core::{Error, Store};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Issue a key; its secret is printed once and only its hash is kept.
    Create {
        /// A name for the key (who or what uses it), unique among keys that are not revoked.
        #[arg(long)]
        name: String,
        /// The tenant whose executions it may touch; `*` for every tenant and the store.
        #[arg(long)]
        tenant: String,
        /// reader, worker, operator or admin (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        daemon: Daemon,
    },
    /// The keys, revoked ones included (never their secrets).
    List {
        #[command(flatten)]
        daemon: Daemon,
    },
    /// Revoke a key (by id or name): it stops working at its next request, without a restart.
    Revoke {
        key: String,
        #[command(flatten)]
        daemon: Daemon,
    },
}

/// A running daemon to go through, when it holds the store.
#[derive(clap::Args)]
pub struct Daemon {
    /// The daemon holding the store: unix:///path/omium.sock, http(s)://host:port.
    #[arg(long)]
    url: Option<String>,
    /// A file holding an admin API key for --url (else $OMIUM_API_KEY).
    #[arg(long = "api-key-file")]
    api_key_file: Option<PathBuf>,
}

/// The API key a client sends: the file's first line, else `$OMIUM_API_KEY`. Never argv.
pub fn client_key(file: Option<&Path>) -> Result<Option<String>, Error> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::InvalidArgument {
            what: "--api-key-file",
            detail: format!("cannot read {}: {e}", file.display()),
        })?;
        let key = text.lines().map(str::trim).find(|l| !l.is_empty());
        return match key {
            Some(k) => Ok(Some(k.to_string())),
            None => Err(Error::InvalidArgument {
                what: "--api-key-file",
                detail: format!(
                    "{} is empty; expected a key on its first line",
                    file.display()
                ),
            }),
        };
    }
    Ok(std::env::var("OMIUM_API_KEY")
        .ok()
        .filter(|k| !k.is_empty()))
}

fn through(daemon: &Daemon, method: &str, args: Value) -> Result<Option<Value>, Error> {
    let Some(url) = &daemon.url else {
        return Ok(None);
    };
    let client = omium_core::serve::Client::connect(
        url,
        client_key(daemon.api_key_file.as_deref())?.as_deref(),
    )?;
    client.call(method, args).map(Some)
}

fn open(store: &Path) -> Result<Store, Error> {
    Store::open(store).map_err(|e| match e.code() {
        "store_locked" => Error::InvalidArgument {
            what: "--store",
            detail: format!(
                "{} is held by another process (omium serve?): manage its keys through it with \
                 --url and an admin key",
                store.display()
            ),
        },
        _ => e,
    })
}

fn print_key(out: &mut impl Write, k: &ApiKey) {
    let _ = writeln!(
        out,
        "{}  {:<20} tenant={:<12} roles={:<24} {}",
        k.id,
        k.name,
        k.tenant,
        k.roles.join(","),
        match k.revoked_ms {
            Some(ms) => format!(
                "revoked {} by {}",
                crate::view::time(ms),
                k.revoked_by.as_deref().unwrap_or("?")
            ),
            None => format!(
                "created {} by {}",
                crate::view::time(k.created_ms),
                k.created_by
            ),
        }
    );
}

pub fn run(
    out: &mut impl Write,
    as_json: bool,
    store: &Path,
    command: &KeysCommand,
) -> Result<(), Error> {
    match command {
        KeysCommand::Create {
            name,
            tenant,
            roles,
            daemon,
        } => {
            let args = json!({"name": name, "tenant": tenant, "roles": roles});
            let (key, secret) = match through(daemon, "keys.create", args)? {
                Some(v) => (
                    serde_json::from_value::<ApiKey>(v["key"].clone()).map_err(|e| {
                        Error::InvalidArgument {
                            what: "answer",
                            detail: format!("the daemon's key is not one: {e}"),
                        }
                    })?,
                    v["secret"].as_str().unwrap_or_default().to_string(),
                ),
                None => keys::create(
                    &open(store)?,
                    &KeySpec {
                        name: name.clone(),
                        tenant: tenant.clone(),
                        roles: roles.clone(),
                    },
                )?,
            };
            if as_json {
                let _ = writeln!(out, "{}", json!({"key": key, "secret": secret}));
            } else {
                print_key(out, &key);
                let _ = writeln!(out, "\n{secret}\n");
                let _ = writeln!(
                    out,
                    "This is the only time the key is shown: store it in a secret manager, and give \
                     it to clients in OMIUM_API_KEY or a key file."
                );
            }
        }
        KeysCommand::List { daemon } => {
            let keys: Vec<ApiKey> = match through(daemon, "keys.list", json!({}))? {
                Some(v) => serde_json::from_value(v).map_err(|e| Error::InvalidArgument {
                    what: "answer",
                    detail: format!("the daemon's keys are not a list of keys: {e}"),
                })?,
                None => keys::list(&Store::open_read_only(store)?)?,
            };
            if as_json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&keys).expect("keys serialize")
                );
            } else if keys.is_empty() {
                let _ = writeln!(
                    out,
                    "no keys; `omium keys create --name NAME --tenant T --role R` issues one"
                );
            } else {
                for k in &keys {
                    print_key(out, k);
                }
            }
        }
        KeysCommand::Revoke { key, daemon } => {
            let revoked: ApiKey = match through(daemon, "keys.revoke", json!({"key": key}))? {
                Some(v) => serde_json::from_value(v).map_err(|e| Error::InvalidArgument {
                    what: "answer",
                    detail: format!("the daemon's answer is not a key: {e}"),
                })?,
                None => {
                    let store = open(store)?;
                    let by = store.actor().to_string();
                    keys::revoke(&store, key, &by)?
                }
            };
            if as_json {
                let _ = writeln!(out, "{}", json!(revoked));
            } else {
                print_key(out, &revoked);
            }
        }
    }
    Ok(())
}
