//! The HTML compatibility check behind `GET /api/v1/message/{ID}/html-check`: which HTML and
//! CSS features a message's HTML uses, and which email clients lack them, by caniemail's data
//! ([`data`]). The answer has Mailpit's shape (`HTMLCheckResponse`), so Mailpit's clients read it.
//!
//! The HTML is parsed as a browser would (html5ever, through scraper): [`html`] looks for
//! elements, attributes and image types in the DOM, [`css`] reads every `style` attribute and
//! `<style>` sheet. Linked stylesheets are not fetched: the check never makes a request.
//!
//! Scoring, as Mailpit's: each warning's `Score` is the share of client versions that support
//! the feature, partly support it or do not (unknown results left out). The overall `Total`
//! weighs each warning by how much of the message uses it (`Found / Nodes`, at most 1) and
//! takes the worst partial and the worst unsupported share; `Supported` is what remains.

mod css;
mod data;
mod html;

use std::collections::{BTreeMap, HashMap};

use scraper::{Html, Selector};
use serde::Serialize;

use data::{ClientResult, Score};

/// How often each feature (by caniemail slug) occurs in a message.
#[derive(Debug, Default)]
struct Findings(BTreeMap<String, usize>);

impl Findings {
    fn add(&mut self, slug: &str, count: usize) {
        if count > 0 {
            *self.0.entry(slug.to_string()).or_default() += count;
        }
    }
}

/// Mailpit's `HTMLCheckResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Report {
    warnings: Vec<Warning>,
    /// Platform → the client families tested on it, for the UI's filter.
    platforms: BTreeMap<String, Vec<String>>,
    total: Total,
}

/// Mailpit's `HTMLCheckTotal`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Total {
    nodes: usize,
    partial: f32,
    supported: f32,
    tests: usize,
    unsupported: f32,
}

/// Mailpit's `HTMLCheckWarning`: one feature the message uses.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Warning {
    slug: String,
    title: String,
    /// caniemail's Markdown text.
    description: String,
    category: String,
    tags: Vec<String>,
    keywords: String,
    notes_by_number: BTreeMap<String, String>,
    score: Score,
    results: Vec<ClientResult>,
    #[serde(rename = "URL")]
    url: String,
}

/// Checks `html`; fails only when the bundled data cannot be read.
pub(crate) fn check(html: &str) -> Result<Report, &'static str> {
    let data = data::caniemail()?;
    let document = Html::parse_document(html);
    let has_body = html.to_ascii_lowercase().contains("<body");
    let mut findings = Findings::default();
    html::check(&document, has_body, &mut findings);
    let known = |slug: &str| data.feature(slug).is_some();
    let mut css = css::Css { findings: &mut findings, known: &known };
    if let Ok(styled) = Selector::parse("[style]") {
        for element in document.select(&styled) {
            css.style_attribute(element.attr("style").unwrap_or_default());
        }
    }
    if let Ok(style) = Selector::parse("style") {
        for element in document.select(&style) {
            css.sheet(&element.text().collect::<String>());
        }
    }
    let nodes = html::node_count(&document).max(1);
    let mut warnings: Vec<Warning> = findings
        .0
        .iter()
        .filter_map(|(slug, found)| Some(warning(data, data.feature(slug)?, *found)))
        .collect();
    warnings.extend(script_warning(&document));
    let css_tests = data.data.iter().filter(|feature| feature.category == "css").count();
    Ok(Report::new(warnings, data.platforms(), nodes, html::test_count() + css_tests))
}

/// Scripts, which caniemail does not list because no client runs them: Mailpit's own warning
/// (JSON data blocks are not scripts).
fn script_warning(document: &Html) -> Option<Warning> {
    let scripts = Selector::parse(
        "script:not([type=\"application/ld+json\" i]):not([type=\"application/json\" i])",
    )
    .ok()?;
    let found = document.select(&scripts).count();
    (found > 0).then(|| Warning {
        slug: "html-script".into(),
        title: "<script> element".into(),
        description: "JavaScript is not supported in any email client.".into(),
        category: "html".into(),
        tags: vec![],
        keywords: String::new(),
        notes_by_number: BTreeMap::new(),
        score: Score { found, supported: 0.0, partial: 0.0, unsupported: 100.0 },
        results: vec![],
        url: String::new(),
    })
}

fn warning(data: &data::Caniemail, feature: &data::Feature, found: usize) -> Warning {
    let results = data.results(feature);
    Warning {
        slug: feature.slug.clone(),
        title: feature.title.clone(),
        description: feature.description.clone().unwrap_or_default(),
        category: feature.category.clone(),
        tags: feature.tags.clone(),
        keywords: feature.keywords.clone().unwrap_or_default(),
        notes_by_number: feature.notes_by_num.clone().unwrap_or_default(),
        score: Score::of(found, &results),
        results,
        url: feature.url.clone(),
    }
}

impl Report {
    /// Totals the warnings and sorts them, worst first.
    fn new(
        mut warnings: Vec<Warning>,
        platforms: BTreeMap<String, Vec<String>>,
        nodes: usize,
        tests: usize,
    ) -> Report {
        let weight: HashMap<String, f32> =
            warnings.iter().map(|w| (w.slug.clone(), usage(w.score.found, nodes))).collect();
        let weighted =
            |w: &Warning, share: f32| share * weight.get(&w.slug).copied().unwrap_or(0.0);
        let worst = |share: fn(&Score) -> f32| {
            warnings.iter().map(|w| weighted(w, share(&w.score))).fold(0.0_f32, f32::max)
        };
        let partial = worst(|s| s.partial);
        let unsupported = worst(|s| s.unsupported);
        let total = Total {
            nodes,
            partial,
            supported: (100.0 - partial - unsupported).max(0.0),
            tests,
            unsupported,
        };
        let badness = |w: &Warning| weighted(w, w.score.partial + w.score.unsupported);
        warnings
            .sort_by(|a, b| badness(b).total_cmp(&badness(a)).then_with(|| a.slug.cmp(&b.slug)));
        Report { warnings, platforms, total }
    }
}

/// How much of the message uses a feature: its uses per element, at most all of it.
fn usage(found: usize, nodes: usize) -> f32 {
    (found as f32 / nodes.max(1) as f32).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning_with(
        slug: &str,
        found: usize,
        supported: f32,
        partial: f32,
        unsupported: f32,
    ) -> Warning {
        Warning {
            slug: slug.into(),
            title: String::new(),
            description: String::new(),
            category: "css".into(),
            tags: vec![],
            keywords: String::new(),
            notes_by_number: BTreeMap::new(),
            score: Score { found, supported, partial, unsupported },
            results: vec![],
            url: String::new(),
        }
    }

    #[test]
    fn the_total_is_the_worst_weighted_share() {
        // 10 elements: "a" (in 5) is unsupported by 40%; "b" (in 1) by 90%; "c" (in 20, so
        // capped at all 10) partly supported by 30%.
        let report = Report::new(
            vec![
                warning_with("a", 5, 60.0, 0.0, 40.0),
                warning_with("b", 1, 10.0, 0.0, 90.0),
                warning_with("c", 20, 70.0, 30.0, 0.0),
            ],
            BTreeMap::new(),
            10,
            7,
        );
        assert_eq!(report.total.unsupported, 20.0); // a: 40 × 5/10 beats b: 90 × 1/10
        assert_eq!(report.total.partial, 30.0); // c: 30 × 1
        assert_eq!(report.total.supported, 50.0);
        assert_eq!(report.total.tests, 7);
        let order: Vec<&str> = report.warnings.iter().map(|w| w.slug.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn supported_never_goes_below_zero() {
        let report = Report::new(
            vec![warning_with("a", 9, 0.0, 60.0, 0.0), warning_with("b", 9, 0.0, 0.0, 70.0)],
            BTreeMap::new(),
            9,
            2,
        );
        assert_eq!(report.total.supported, 0.0);
    }

    #[test]
    fn client_scores_leave_unknown_out() {
        let (support, note) = data::Support::parse("a #2 #3");
        assert_eq!((support, note.as_str()), (data::Support::Partial, "2"));
        let result = |support: &'static str| ClientResult {
            name: String::new(),
            platform: String::new(),
            family: String::new(),
            version: String::new(),
            support,
            note_number: String::new(),
        };
        let results =
            [result("yes"), result("yes"), result("no"), result("partial"), result("unknown")];
        let score = Score::of(3, &results);
        assert_eq!(
            (score.found, score.supported, score.partial, score.unsupported),
            (3, 50.0, 25.0, 25.0)
        );
        assert_eq!(Score::of(1, &[result("unknown")]).supported, 0.0);
    }

    #[test]
    fn scripts_are_unsupported_everywhere_but_json_data_is_no_script() {
        let html =
            "<p>x</p><script>alert(1)</script><script type=\"application/ld+json\">{}</script>";
        let report = check(html).expect("check");
        let script = report.warnings.iter().find(|w| w.slug == "html-script").expect("a warning");
        assert_eq!((script.score.found, script.score.unsupported), (1, 100.0));
        // p and two scripts: the script is a third of the message.
        assert!((report.total.unsupported - 100.0 / 3.0).abs() < 0.01, "{:?}", report.total);
        assert!(check("<p>x</p>").expect("check").warnings.is_empty());
    }

    #[test]
    fn the_bundled_data_knows_every_feature_the_check_reports() {
        let data = data::caniemail().expect("the bundled data loads");
        assert!(data.data.len() > 300, "{}", data.data.len());
        let html = "<html><head><style>@media (prefers-color-scheme: dark) { .x { display: flex } }\
                    </style></head><body><div style=\"position: absolute\">x</div>\
                    <svg></svg></body></html>";
        let report = check(html).expect("check");
        let slugs: Vec<&str> = report.warnings.iter().map(|w| w.slug.as_str()).collect();
        for slug in [
            "css-display-flex",
            "css-position",
            "css-at-media-prefers-color-scheme",
            "html-svg",
            "html-style",
        ] {
            assert!(slugs.contains(&slug), "{slug} not in {slugs:?}");
        }
        let flex = report.warnings.iter().find(|w| w.slug == "css-display-flex").expect("flex");
        assert!(flex.results.iter().any(|r| r.family == "outlook" && r.support == "no"));
        assert!(report.platforms.get("windows").is_some_and(|f| f.iter().any(|n| n == "Outlook")));
        assert!(report.total.unsupported > 0.0 && report.total.supported < 100.0);
    }
}
