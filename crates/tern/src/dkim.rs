//! `tern dkim generate|list|check`: make DKIM keys, show the DNS records to publish, and check
//! that what DNS publishes matches the keys. The keys are files in the key directory
//! (`dkim.key_dir`, by default `DATA_DIR/dkim`); the server loads them when it starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tern_auth::keys::{self, Algorithm, DEFAULT_RSA_BITS, KeyFile};

use crate::config::DEFAULT_DATA_DIR;

/// Arguments of `tern dkim`.
#[derive(clap::Args, Debug)]
pub struct DkimArgs {
    /// Data directory; the keys are in its `dkim` folder unless --key-dir says otherwise.
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data: PathBuf,
    /// Key directory (key: dkim.key_dir).
    #[arg(long = "key-dir", value_name = "DIR", global = true)]
    key_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: DkimAction,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AlgorithmArg {
    Rsa,
    Ed25519,
}

#[derive(clap::Subcommand, Debug)]
enum DkimAction {
    /// Make signing keys for DOMAIN and print the DNS TXT records to publish.
    ///
    /// Without --algorithm, two keys: RSA (which every verifier knows) and Ed25519 (RFC 8463),
    /// so mail carries both signatures. Without --selector, selectors are dated
    /// (`rYYYYMM`, `eYYYYMM`), which makes rotation a matter of generating new ones: publish
    /// the new records, restart Tern (it then signs with old and new), remove the old files
    /// and restart, and remove the old records a week later.
    Generate {
        /// The signing domain (the From: domain of the mail, or a parent of it).
        domain: String,
        /// The selector (the DNS label before `._domainkey`).
        #[arg(long)]
        selector: Option<String>,
        /// Only this algorithm.
        #[arg(long, value_enum)]
        algorithm: Option<AlgorithmArg>,
        /// RSA key size.
        #[arg(long, default_value_t = DEFAULT_RSA_BITS)]
        bits: usize,
    },
    /// List the keys with the DNS records they need.
    List,
    /// Look up DOMAIN's published records and say whether each key's matches.
    Check {
        /// The signing domain.
        domain: String,
        /// Ask this name server (ip:port) instead of the system's.
        #[arg(long = "dns", value_name = "ADDR")]
        dns: Vec<SocketAddr>,
    },
}

pub fn main(args: DkimArgs) -> anyhow::Result<()> {
    let dir = args.key_dir.unwrap_or_else(|| args.data.join("dkim"));
    match args.action {
        DkimAction::Generate { domain, selector, algorithm, bits } => {
            generate(&dir, &domain, selector, algorithm, bits)
        }
        DkimAction::List => {
            let keys = keys::load_dir(&dir)?;
            if keys.is_empty() {
                println!(
                    "no keys in {} (make some with `tern dkim generate DOMAIN`)",
                    dir.display()
                );
            }
            for key in &keys {
                print_record(key);
            }
            Ok(())
        }
        DkimAction::Check { domain, dns } => crate::runtime()?.block_on(check(&dir, &domain, &dns)),
    }
}

fn generate(
    dir: &std::path::Path,
    domain: &str,
    selector: Option<String>,
    algorithm: Option<AlgorithmArg>,
    bits: usize,
) -> anyhow::Result<()> {
    if !(1024..=8192).contains(&bits) {
        bail!("--bits must be between 1024 and 8192 (2048 is the usual size)");
    }
    let month = month_stamp();
    let wanted: Vec<(Algorithm, String)> = match (algorithm, selector) {
        (Some(AlgorithmArg::Rsa), selector) => {
            vec![(Algorithm::Rsa, selector.unwrap_or_else(|| format!("r{month}")))]
        }
        (Some(AlgorithmArg::Ed25519), selector) => {
            vec![(Algorithm::Ed25519, selector.unwrap_or_else(|| format!("e{month}")))]
        }
        (None, Some(selector)) => vec![
            (Algorithm::Rsa, format!("{selector}r")),
            (Algorithm::Ed25519, format!("{selector}e")),
        ],
        (None, None) => {
            vec![(Algorithm::Rsa, format!("r{month}")), (Algorithm::Ed25519, format!("e{month}"))]
        }
    };
    for (algorithm, selector) in wanted {
        let key = keys::generate(dir, domain, &selector, algorithm, bits)?;
        println!("wrote {}", key.path.display());
        print_record(&key);
    }
    println!("Publish the records above, then restart tern serve to sign with the new keys.");
    Ok(())
}

fn print_record(key: &KeyFile) {
    println!("{}. IN TXT ( {} )", key.dns_name(), quoted_strings(&key.dns_record()));
}

/// A TXT value as DNS zone files want it: quoted strings of at most 255 characters.
fn quoted_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `YYYYMM` of today (UTC), for dated selectors.
fn month_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let today = mail_parser::DateTime::from_timestamp(i64::try_from(secs).unwrap_or_default());
    format!("{:04}{:02}", today.year, today.month)
}

async fn check(dir: &std::path::Path, domain: &str, dns: &[SocketAddr]) -> anyhow::Result<()> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let keys: Vec<KeyFile> =
        keys::load_dir(dir)?.into_iter().filter(|key| key.domain == domain).collect();
    if keys.is_empty() {
        bail!("no keys for {domain} in {}", dir.display());
    }
    let resolver = tern_dns::resolver(dns, Duration::from_secs(5))?;
    let mut failed = 0;
    for key in &keys {
        let verdict = match published(&resolver, key).await? {
            Ok(()) => "ok".to_string(),
            Err(reason) => {
                failed += 1;
                format!("fail: {reason}")
            }
        };
        println!("{}: {verdict}", key.dns_name());
    }
    if failed > 0 {
        bail!("{failed} of {} keys are not published as they should be", keys.len());
    }
    Ok(())
}

/// Whether DNS publishes `key` at its name: `Ok(Err(reason))` when it does not; `Err` when
/// DNS did not answer.
pub(crate) async fn published(
    resolver: &tern_dns::TokioResolver,
    key: &KeyFile,
) -> anyhow::Result<Result<(), String>> {
    let name = key.dns_name();
    let published = tern_dns::txt_texts(resolver, &name)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("looking up {name}"))?;
    Ok(match published.as_slice() {
        [] => Err("not published".to_string()),
        records if records.iter().any(|r| same_key(r, &key.dns_record())) => Ok(()),
        [one] => Err(format!("published record differs: {one}")),
        _ => Err("several records, none with this key".to_string()),
    })
}

/// Whether a published record carries the same key (`p=`, spaces ignored) of the same type.
fn same_key(published: &str, ours: &str) -> bool {
    let tag = |record: &str, name: &str| {
        record.split(';').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            (k.trim() == name).then(|| v.split_whitespace().collect::<String>())
        })
    };
    tag(published, "p") == tag(ours, "p")
        && tag(published, "k").unwrap_or_else(|| "rsa".into()) == tag(ours, "k").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_records_match_by_key_and_type() {
        let ours = "v=DKIM1; k=rsa; p=MIIBIjAN";
        assert!(same_key("v=DKIM1; k=rsa; p=MIIB IjAN", ours));
        assert!(same_key("v=DKIM1; p=MIIBIjAN", ours), "k defaults to rsa");
        assert!(!same_key("v=DKIM1; k=rsa; p=", ours), "revoked");
        assert!(!same_key("v=DKIM1; k=ed25519; p=MIIBIjAN", ours));
        assert_eq!(quoted_strings(&"a".repeat(300)).matches('"').count(), 4);
        assert_eq!(month_stamp().len(), 6);
    }
}
