//! The caniemail data set, bundled in the binary (`crates/http/data/caniemail`: source, date and
//! licence in its README), inflated and parsed once on first use; and what it says about one
//! feature: each client's support and the feature's support score.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// caniemail's `api.json`, gzip-compressed.
const CANIEMAIL_GZ: &[u8] = include_bytes!("../../data/caniemail/caniemail.json.gz");
/// Most bytes the inflated data may take (it is about 650 kB): a bound, not a guess at its size.
const MAX_INFLATED_BYTES: u64 = 16 << 20;

/// The parts of caniemail's JSON the check uses.
#[derive(Debug, Deserialize)]
pub(crate) struct Caniemail {
    /// Names to show for families (`gmail` → `Gmail`) and platforms.
    pub nicenames: NiceNames,
    /// One entry per feature.
    pub data: Vec<Feature>,
}

/// Display names of caniemail's keys.
#[derive(Debug, Deserialize)]
pub(crate) struct NiceNames {
    /// Client family key → name.
    pub family: BTreeMap<String, String>,
    /// Platform key → name.
    pub platform: BTreeMap<String, String>,
}

/// Family → platform → client version → support (`y`, `n`, `a` partial, `u` unknown, each
/// optionally followed by note references such as ` #1`).
type Stats = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// One HTML or CSS feature and its support in each tested client.
#[derive(Debug, Deserialize)]
pub(crate) struct Feature {
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub url: String,
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub keywords: Option<String>,
    pub stats: Stats,
    #[serde(default)]
    pub notes_by_num: Option<BTreeMap<String, String>>,
}

/// The bundled data, or why it could not be read (a broken build, reported as a 500).
pub(crate) fn caniemail() -> Result<&'static Caniemail, &'static str> {
    static DATA: OnceLock<Result<Caniemail, String>> = OnceLock::new();
    DATA.get_or_init(load).as_ref().map_err(String::as_str)
}

fn load() -> Result<Caniemail, String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(CANIEMAIL_GZ)
        .take(MAX_INFLATED_BYTES)
        .read_to_end(&mut json)
        .map_err(|e| format!("the bundled caniemail data cannot be inflated: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("the bundled caniemail data is invalid: {e}"))
}

impl Caniemail {
    /// The feature named `slug`.
    pub fn feature(&self, slug: &str) -> Option<&Feature> {
        self.data.iter().find(|feature| feature.slug == slug)
    }

    /// Platform key → the names of the client families tested on it, sorted: every client
    /// the data knows, for the UI's platform filter.
    pub fn platforms(&self) -> BTreeMap<String, Vec<String>> {
        let mut platforms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for feature in &self.data {
            for (family, by_platform) in &feature.stats {
                let name = self.family_name(family);
                for platform in by_platform.keys() {
                    let names = platforms.entry(platform.clone()).or_default();
                    if !names.iter().any(|known| known == name) {
                        names.push(name.to_string());
                    }
                }
            }
        }
        platforms.values_mut().for_each(|names| names.sort());
        platforms
    }

    fn family_name<'a>(&'a self, family: &'a str) -> &'a str {
        self.nicenames.family.get(family).map_or(family, String::as_str)
    }

    /// One result per client version that tested `feature`.
    pub fn results(&self, feature: &Feature) -> Vec<ClientResult> {
        let mut results = Vec::new();
        for (family, by_platform) in &feature.stats {
            for (platform, versions) in by_platform {
                let platform_name = self.nicenames.platform.get(platform).unwrap_or(platform);
                for (version, support) in versions {
                    let (support, note) = Support::parse(support);
                    results.push(ClientResult {
                        name: format!("{} {platform_name} ({version})", self.family_name(family)),
                        platform: platform.clone(),
                        family: family.clone(),
                        version: version.clone(),
                        support: support.as_str(),
                        note_number: note,
                    });
                }
            }
        }
        results
    }
}

/// What one client version does with a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    Yes,
    No,
    Partial,
    /// Not tested, or the result is not known: left out of the score.
    Unknown,
}

impl Support {
    /// caniemail's value (`"a #1 #3"`) as the support and the first note's number (`"1"`).
    pub fn parse(value: &str) -> (Support, String) {
        let mut words = value.split_whitespace();
        let support = match words.next() {
            Some("y") => Support::Yes,
            Some("n") => Support::No,
            Some("a") => Support::Partial,
            _ => Support::Unknown,
        };
        let note = words.find_map(|word| word.strip_prefix('#')).unwrap_or_default();
        (support, note.to_string())
    }

    /// The name Mailpit's API uses (`unknown` is Tern's: Mailpit counts it as partial).
    pub fn as_str(self) -> &'static str {
        match self {
            Support::Yes => "yes",
            Support::No => "no",
            Support::Partial => "partial",
            Support::Unknown => "unknown",
        }
    }
}

/// Mailpit's `HTMLCheckResult`: one client version's support for a feature.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ClientResult {
    pub name: String,
    pub platform: String,
    pub family: String,
    pub version: String,
    pub support: &'static str,
    pub note_number: String,
}

/// Mailpit's `HTMLCheckScore`: how often the message uses a feature, and the share of client
/// versions (in percent) that support it, partly support it or do not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Score {
    pub found: usize,
    pub supported: f32,
    pub partial: f32,
    pub unsupported: f32,
}

impl Score {
    /// The shares over `results` with a known support; all zero when none is known.
    pub fn of(found: usize, results: &[ClientResult]) -> Score {
        let count = |name: &str| results.iter().filter(|r| r.support == name).count() as f32;
        let (yes, no, partial) = (count("yes"), count("no"), count("partial"));
        let known = yes + no + partial;
        if known == 0.0 {
            return Score { found, ..Score::default() };
        }
        Score {
            found,
            supported: yes / known * 100.0,
            partial: partial / known * 100.0,
            unsupported: no / known * 100.0,
        }
    }
}
