//! The HTML half of the check: which caniemail HTML and image features a parsed document uses,
//! found in the DOM with CSS selectors (elements and attributes), by the file type of each
//! image's `src`, and by the comment and doctype nodes.

use std::sync::OnceLock;

use scraper::{Html, Node, Selector};

use super::Findings;

/// caniemail feature → the elements that use it. The choice follows Mailpit's check (markup
/// that some clients drop or rewrite), plus the ARIA, layout-attribute and link features
/// caniemail also tests; plain structure every message has (`div`, `p`, `table`) is left out.
const ELEMENT_FEATURES: &[(&str, &str)] = &[
    ("html-abbr", "abbr"),
    ("html-address", "address"),
    ("html-anchor-links", "a[href^=\"#\"]"),
    ("html-aria-describedby", "[aria-describedby]"),
    ("html-aria-hidden", "[aria-hidden]"),
    ("html-aria-label", "[aria-label]"),
    ("html-aria-labelledby", "[aria-labelledby]"),
    ("html-aria-live", "[aria-live]"),
    ("html-audio", "audio"),
    ("html-base", "base"),
    ("html-bdi", "bdi"),
    ("html-button-reset", "button[type=\"reset\" i]"),
    ("html-button-submit", "button[type=\"submit\" i]"),
    ("html-dialog", "dialog"),
    ("html-form", "form"),
    ("html-hidden", "[hidden]"),
    ("html-hr", "hr"),
    ("html-image-maps", "map, img[usemap]"),
    ("html-input-checkbox", "input[type=\"checkbox\" i]"),
    ("html-input-hidden", "input[type=\"hidden\" i]"),
    ("html-input-radio", "input[type=\"radio\" i]"),
    ("html-input-reset", "input[type=\"reset\" i]"),
    ("html-input-submit", "input[type=\"submit\" i]"),
    ("html-input-text", "input[type=\"text\" i]"),
    ("html-link", "link"),
    ("html-loading-attribute", "[loading]"),
    ("html-marquee", "marquee"),
    ("html-meter", "meter"),
    ("html-object", "object, embed"),
    ("html-picture", "picture"),
    ("html-popover", "[popover]"),
    ("html-progress", "progress"),
    ("html-required", "[required]"),
    ("html-role", "[role]"),
    ("html-ruby", "ruby"),
    ("html-select", "select"),
    (
        "html-semantics",
        "article, aside, details, figcaption, figure, footer, header, main, mark, nav, section, \
         summary, time",
    ),
    ("html-srcset", "[srcset]"),
    ("html-style", "style"),
    ("html-svg", "svg"),
    ("html-textarea", "textarea"),
    ("html-video", "video"),
    ("html-wbr", "wbr"),
];

/// Image file types by the ending of `src` (before any `?` or `#`), lowercased.
const IMAGE_TYPES: &[(&str, &[&str])] = &[
    ("image-apng", &[".apng"]),
    ("image-avif", &[".avif"]),
    ("image-bmp", &[".bmp"]),
    ("image-gif", &[".gif"]),
    ("image-hdr", &[".hdr"]),
    ("image-heif", &[".heif", ".heic"]),
    ("image-ico", &[".ico"]),
    ("image-mp4", &[".mp4"]),
    ("image-svg", &[".svg"]),
    ("image-tiff", &[".tif", ".tiff"]),
    ("image-webp", &[".webp"]),
];

/// The element features with their parsed selectors.
fn selectors() -> &'static [(&'static str, Selector)] {
    static SELECTORS: OnceLock<Vec<(&'static str, Selector)>> = OnceLock::new();
    SELECTORS.get_or_init(|| {
        // Every selector is a constant above; a unit test parses them all.
        ELEMENT_FEATURES
            .iter()
            .filter_map(|(slug, css)| Some((*slug, Selector::parse(css).ok()?)))
            .collect()
    })
}

/// How many HTML tests there are (each feature counts once).
pub(super) fn test_count() -> usize {
    ELEMENT_FEATURES.len() + IMAGE_TYPES.len() + 3
}

/// Adds the HTML features `document` uses to `findings`; `has_body` says whether the source
/// wrote a `<body>` (the parser always adds one).
pub(super) fn check(document: &Html, has_body: bool, findings: &mut Findings) {
    for (slug, selector) in selectors() {
        findings.add(slug, document.select(selector).count());
    }
    if has_body {
        findings.add("html-body", 1);
    }
    let mut comments = 0;
    for node in document.tree.nodes() {
        match node.value() {
            Node::Comment(_) => comments += 1,
            Node::Doctype(_) => findings.add("html-doctype", 1),
            _ => {}
        }
    }
    findings.add("html-comments", comments);
    images(document, findings);
}

fn images(document: &Html, findings: &mut Findings) {
    static IMG: OnceLock<Option<Selector>> = OnceLock::new();
    let Some(img) = IMG.get_or_init(|| Selector::parse("img[src]").ok()) else { return };
    for image in document.select(img) {
        let src = image.attr("src").unwrap_or_default().trim();
        if src.get(..11).is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:image/")) {
            findings.add("image-base64", 1);
            continue;
        }
        let path = src.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
        if let Some((slug, _)) =
            IMAGE_TYPES.iter().find(|(_, endings)| endings.iter().any(|e| path.ends_with(e)))
        {
            findings.add(slug, 1);
        }
    }
}

/// Elements that count towards `Nodes`: every element of the document except the frame the
/// parser supplies (`html`, `head`, `body`) and `meta`.
pub(super) fn node_count(document: &Html) -> usize {
    document
        .tree
        .nodes()
        .filter_map(|node| node.value().as_element())
        .filter(|element| !matches!(element.name(), "html" | "head" | "body" | "meta"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selector_parses() {
        assert_eq!(selectors().len(), ELEMENT_FEATURES.len());
    }

    #[test]
    fn elements_attributes_and_images_are_found() {
        let html = Html::parse_document(
            "<!doctype html><html><body><!-- a --><form><input type=CHECKBOX></form>\
             <img src=\"https://x.test/a.WEBP?v=1\"><img src=\"data:image/png;base64,AA\">\
             <img src=\"/b.png\"><a href=\"#top\">top</a><a href=\"/x\">x</a></body></html>",
        );
        let mut findings = Findings::default();
        check(&html, true, &mut findings);
        let found = |slug| findings.0.get(slug).copied().unwrap_or(0);
        assert_eq!(found("html-form"), 1);
        assert_eq!(found("html-input-checkbox"), 1);
        assert_eq!(found("image-webp"), 1);
        assert_eq!(found("image-base64"), 1);
        assert_eq!(found("html-anchor-links"), 1);
        assert_eq!(found("html-comments"), 1);
        assert_eq!(found("html-doctype"), 1);
        assert_eq!(found("html-body"), 1);
        assert_eq!(found("html-svg"), 0);
        // form, input, 3 img, 2 a.
        assert_eq!(node_count(&html), 7);
    }
}
