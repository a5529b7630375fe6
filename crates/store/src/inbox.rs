//! How recipient addresses are filed: the inbox an address belongs to, with plus-addressing
//! folded. Shared by the model (tags from `+tag`), the search language (`inbox:`) and the
//! backends, so it sits below all of them.

/// The inbox a recipient address is filed under: plus-addressing folded (`a+x@d` → `a@d` with
/// tag `x`), lower-cased so `Bob@Example.com` and `bob@example.com` share one inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbox {
    /// The folded address.
    pub address: String,
    /// The `+tag`, if any.
    pub tag: Option<String>,
}

impl Inbox {
    /// Folds one recipient address.
    pub fn of(address: &str) -> Inbox {
        let lower = address.to_lowercase();
        let (local, domain) = match lower.rsplit_once('@') {
            Some((local, domain)) => (local, Some(domain)),
            None => (lower.as_str(), None),
        };
        let (base, tag) = match local.split_once('+') {
            Some((base, tag)) if !base.is_empty() && !tag.is_empty() => {
                (base, Some(tag.to_string()))
            }
            _ => (local, None),
        };
        let address = match domain {
            Some(domain) => format!("{base}@{domain}"),
            None => base.to_string(),
        };
        Inbox { address, tag }
    }
}
