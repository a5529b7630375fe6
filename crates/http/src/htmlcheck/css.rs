//! The CSS half of the check: which caniemail CSS features a style attribute or a `<style>`
//! sheet uses, read with cssparser's tokenizer (the one Servo and Firefox use), so comments,
//! strings and escapes never fake a match.
//!
//! What counts: each declaration's property (`css-<property>`, or the family it belongs to:
//! `margin-top` is `css-margin`), what its value uses (`display: flex`, `rgb()`, `calc()`,
//! `rem`, `!important`, `var()`), at-rules and the media features they test, and in sheets each
//! selector's kinds (class, id, attribute, combinators) and pseudo-classes and elements.
//! Nesting deeper than [`MAX_DEPTH`] is skipped unread, so hostile input cannot exhaust the
//! stack.

use cssparser::{Delimiter, ParseError, Parser, Token};

use super::Findings;

/// Deepest block nesting read (a real sheet nests three or four levels).
const MAX_DEPTH: usize = 16;

/// Units whose support varies; `px`, `em`, `%` and `pt` work everywhere and are not reported.
const UNITS: &[&str] = &["ch", "cm", "ex", "in", "mm", "pc", "rem", "vh", "vmax", "vmin", "vw"];

/// Media features caniemail tests, by the name written in the query.
const MEDIA_FEATURES: &[(&str, &str)] = &[
    ("prefers-color-scheme", "css-at-media-prefers-color-scheme"),
    ("prefers-reduced-motion", "css-at-media-prefers-reduced-motion"),
    ("orientation", "css-at-media-orientation"),
    ("hover", "css-at-media-hover"),
    ("device-pixel-ratio", "css-at-media-device-pixel-ratio"),
    ("min-device-pixel-ratio", "css-at-media-device-pixel-ratio"),
    ("max-device-pixel-ratio", "css-at-media-device-pixel-ratio"),
];

/// Pseudo-elements that may be written with one colon.
const LEGACY_PSEUDO_ELEMENTS: &[&str] = &["before", "after", "first-letter", "first-line"];

type Walked = Result<(), ParseError<()>>;

/// What the walk needs besides the parser: where findings go and which slugs the data knows.
pub(super) struct Css<'a> {
    pub findings: &'a mut Findings,
    pub known: &'a dyn Fn(&str) -> bool,
}

impl Css<'_> {
    /// A `style` attribute: a list of declarations.
    pub fn style_attribute(&mut self, css: &str) {
        let mut parser = Parser::new(css);
        let _ = self.declarations(&mut parser, 0);
    }

    /// A `<style>` element's sheet.
    pub fn sheet(&mut self, css: &str) {
        let mut parser = Parser::new(css);
        let _ = self.rules(&mut parser, 0, true);
    }

    fn found(&mut self, slug: &str) {
        self.findings.add(slug, 1);
    }

    /// Rules until the end of the block; `selectors` is false in `@keyframes` (`from`, `50%`).
    fn rules<'i>(&mut self, p: &mut Parser<'i>, depth: usize, selectors: bool) -> Walked {
        while let Ok(token) = p.next() {
            match token.clone() {
                Token::AtKeyword(name) => self.at_rule(p, &name.to_ascii_lowercase(), depth)?,
                Token::CDO | Token::CDC | Token::Semicolon => {}
                Token::CurlyBracketBlock => {
                    self.block(p, depth, |css, p, d| css.declarations(p, d))
                }
                first => {
                    if self.selector(p, Some(first), selectors, depth)? {
                        self.block(p, depth, |css, p, d| css.declarations(p, d));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the block just opened with `read`, unless it is too deep (then it is skipped).
    fn block<'i>(
        &mut self,
        p: &mut Parser<'i>,
        depth: usize,
        read: impl FnOnce(&mut Self, &mut Parser<'i>, usize) -> Walked,
    ) {
        if depth < MAX_DEPTH {
            let _ = p.parse_nested_block(|p| read(self, p, depth + 1));
        }
    }

    fn at_rule<'i>(&mut self, p: &mut Parser<'i>, name: &str, depth: usize) -> Walked {
        self.found(&format!("css-at-{name}"));
        while let Ok(token) = p.next() {
            match token.clone() {
                Token::Semicolon => return Ok(()),
                Token::CurlyBracketBlock => {
                    match name {
                        "media" | "supports" | "container" | "layer" | "document" => {
                            self.block(p, depth, |css, p, d| css.rules(p, d, true));
                        }
                        "keyframes" | "-webkit-keyframes" => {
                            self.block(p, depth, |css, p, d| css.rules(p, d, false));
                        }
                        _ => self.block(p, depth, |css, p, d| css.declarations(p, d)),
                    }
                    return Ok(());
                }
                Token::ParenthesisBlock | Token::Function(_) => {
                    self.block(p, depth, |css, p, d| css.media_query(p, d));
                }
                Token::Ident(feature) => self.media_feature(&feature),
                _ => {}
            }
        }
        Ok(())
    }

    fn media_query<'i>(&mut self, p: &mut Parser<'i>, depth: usize) -> Walked {
        while let Ok(token) = p.next() {
            match token.clone() {
                Token::Ident(feature) => self.media_feature(&feature),
                Token::ParenthesisBlock | Token::Function(_) => {
                    self.block(p, depth, |css, p, d| css.media_query(p, d));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn media_feature(&mut self, feature: &str) {
        let feature = feature.to_ascii_lowercase();
        let feature = strip_vendor(&feature);
        if let Some((_, slug)) = MEDIA_FEATURES.iter().find(|(name, _)| *name == feature) {
            self.found(slug);
        }
    }

    /// A rule's selector list, starting with `first`, up to its `{` block; whether it reached
    /// one (the caller may then read it; only just after it may a block be read).
    fn selector<'i>(
        &mut self,
        p: &mut Parser<'i>,
        first: Option<Token<'i>>,
        kinds: bool,
        depth: usize,
    ) -> Result<bool, ParseError<()>> {
        let mut shape = SelectorShape::default();
        let mut next = first;
        loop {
            let token = match next.take() {
                Some(token) => token,
                None => match p.next_including_whitespace() {
                    Ok(Token::CurlyBracketBlock) => return Ok(true),
                    Err(_) => return Ok(false),
                    Ok(token) => token.clone(),
                },
            };
            let kind = match token {
                Token::WhiteSpace(_) => {
                    shape.space();
                    continue;
                }
                Token::Comma => Some("css-selector-grouping"),
                Token::Delim('>') => Some("css-selector-child"),
                Token::Delim('+') => Some("css-selector-adjacent-sibling"),
                Token::Delim('~') => Some("css-selector-general-sibling"),
                _ => None,
            };
            if let Some(combinator) = kind {
                shape.combinator();
                self.found_if(kinds, combinator);
                continue;
            }
            let simple = match token {
                Token::IDHash(_) => "css-selector-id",
                Token::Delim('.') => {
                    let _ = p.next_including_whitespace();
                    "css-selector-class"
                }
                Token::SquareBracketBlock => "css-selector-attribute",
                Token::Delim('*') => "css-selector-universal",
                Token::Ident(_) => "css-selector-type",
                // `p:hover` is one element in a state, not a chain of selectors.
                Token::Colon => {
                    self.pseudo(p, depth)?;
                    continue;
                }
                _ => continue,
            };
            if shape.simple() {
                self.found_if(kinds, "css-selector-descendant");
            }
            if shape.chained() {
                self.found_if(kinds, "css-selector-chaining");
            }
            self.found_if(kinds, simple);
        }
    }

    fn found_if(&mut self, kinds: bool, slug: &str) {
        if kinds {
            self.found(slug);
        }
    }

    /// After a `:`: a pseudo-class, or after `::` a pseudo-element.
    fn pseudo<'i>(&mut self, p: &mut Parser<'i>, depth: usize) -> Walked {
        let (element, token) = match p.next_including_whitespace()?.clone() {
            Token::Colon => (true, p.next_including_whitespace()?.clone()),
            token => (false, token),
        };
        match token {
            Token::Ident(name) => {
                let name = name.to_ascii_lowercase();
                if element || LEGACY_PSEUDO_ELEMENTS.contains(&name.as_str()) {
                    self.found(&format!("css-pseudo-element-{name}"));
                } else {
                    self.found(&format!("css-pseudo-class-{name}"));
                }
            }
            Token::Function(name) => {
                self.found(&format!("css-pseudo-class-{}", name.to_ascii_lowercase()));
                // `:not(.a:hover)`: what is inside counts too.
                self.block(p, depth, |css, p, d| css.selector(p, None, false, d).map(|_| ()));
            }
            _ => {}
        }
        Ok(())
    }

    fn declarations<'i>(&mut self, p: &mut Parser<'i>, depth: usize) -> Walked {
        while let Ok(token) = p.next() {
            match token.clone() {
                Token::Ident(property) => {
                    let property = property.to_ascii_lowercase();
                    let _ = p.parse_until_after(Delimiter::Semicolon, |p| {
                        p.expect_colon()?;
                        self.declaration(p, &property, depth)
                    });
                }
                Token::AtKeyword(name) => self.at_rule(p, &name.to_ascii_lowercase(), depth)?,
                Token::Semicolon => {}
                // A nested rule (`&:hover { … }`).
                first => {
                    self.found("css-nesting");
                    if self.selector(p, Some(first), true, depth)? {
                        self.block(p, depth, |css, p, d| css.declarations(p, d));
                    }
                }
            }
        }
        Ok(())
    }

    fn declaration<'i>(&mut self, p: &mut Parser<'i>, property: &str, depth: usize) -> Walked {
        if let Some(slug) = self.property_feature(property) {
            self.found(&slug);
        }
        let display = strip_vendor(property) == "display";
        let mut first = true;
        self.value(p, depth, &mut |css, token| {
            if let (true, true, Token::Ident(value)) = (display, first, token) {
                css.display(&value.to_ascii_lowercase());
            }
            first = false;
        })
    }

    fn display(&mut self, value: &str) {
        match value {
            "flex" | "inline-flex" | "-webkit-box" | "-webkit-flex" => {
                self.found("css-display-flex")
            }
            "grid" | "inline-grid" => self.found("css-display-grid"),
            "none" => self.found("css-display-none"),
            _ => {}
        }
    }

    /// A value's tokens: functions, units, keywords and `!important`; `each` sees the
    /// top-level ones.
    fn value<'i>(
        &mut self,
        p: &mut Parser<'i>,
        depth: usize,
        each: &mut dyn FnMut(&mut Self, &Token<'i>),
    ) -> Walked {
        while let Ok(token) = p.next() {
            let token = token.clone();
            each(self, &token);
            match &token {
                Token::Function(name) => {
                    if let Some(slug) = function_feature(&name.to_ascii_lowercase()) {
                        self.found(slug);
                    }
                    self.block(p, depth, |css, p, d| css.value(p, d, &mut |_, _| {}));
                }
                Token::ParenthesisBlock | Token::SquareBracketBlock => {
                    self.block(p, depth, |css, p, d| css.value(p, d, &mut |_, _| {}));
                }
                Token::Dimension { unit, .. } => {
                    let unit = unit.to_ascii_lowercase();
                    if UNITS.contains(&unit.as_str()) {
                        self.found(&format!("css-unit-{unit}"));
                    }
                }
                Token::Ident(word) if word.eq_ignore_ascii_case("initial") => {
                    self.found("css-unit-initial");
                }
                Token::Ident(word) if word.eq_ignore_ascii_case("system-ui") => {
                    // caniemail's slug is spelt this way.
                    self.found("css-sytem-ui");
                }
                Token::Delim('!')
                    if p.try_parse(|p| p.expect_ident_matching("important")).is_ok() =>
                {
                    self.found("css-important");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The feature a property belongs to: its own (`css-opacity`) when caniemail has one,
    /// else its family's.
    fn property_feature(&self, property: &str) -> Option<String> {
        if property.starts_with("--") {
            return Some("css-variables".into());
        }
        let property = strip_vendor(property);
        let own = format!("css-{property}");
        if (self.known)(&own) {
            return Some(own);
        }
        family_feature(property).map(str::to_string)
    }
}

/// Where a selector stands: simple selectors in the current compound, and whether whitespace
/// (a descendant combinator, unless another combinator follows) came after the last one.
#[derive(Default)]
struct SelectorShape {
    compound: usize,
    space_after: bool,
}

impl SelectorShape {
    fn space(&mut self) {
        if self.compound > 0 {
            self.space_after = true;
            self.compound = 0;
        }
    }

    fn combinator(&mut self) {
        self.compound = 0;
        self.space_after = false;
    }

    /// A simple selector follows; true when whitespace made it a descendant.
    fn simple(&mut self) -> bool {
        self.compound += 1;
        std::mem::take(&mut self.space_after)
    }

    /// True once per compound, when its second simple selector arrives (`a.b`, `.a.b`).
    fn chained(&self) -> bool {
        self.compound == 2
    }
}

fn strip_vendor(name: &str) -> &str {
    ["-webkit-", "-moz-", "-ms-", "-o-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name)
}

/// The feature of a property that has none of its own.
fn family_feature(property: &str) -> Option<&'static str> {
    let logical = |base: &str| {
        let rest = property.strip_prefix(base)?;
        Some(match rest {
            "-inline-start" | "-inline-end" => "start-end-inline",
            "-block-start" | "-block-end" => "start-end-block",
            "-inline" | "-block" => "inline-block",
            _ => return None,
        })
    };
    let feature = match property {
        "top" | "right" | "bottom" | "left" => "css-left-right-top-bottom",
        "font-family" | "font-style" | "font-variant" => "css-font",
        "row-gap" | "column-gap" => "css-gap",
        "columns" => "css-column-layout-properties",
        _ if property.starts_with("column-") => "css-column-layout-properties",
        _ if property.starts_with("grid-template") => "css-grid-template",
        _ if property.starts_with("scroll-snap") => "css-scroll-snap",
        _ if property.starts_with("animation") => "css-animation",
        _ if property.starts_with("transition") => "css-transition",
        _ => match (logical("margin"), logical("padding")) {
            (Some("start-end-inline"), _) => "css-margin-inline-start-end",
            (Some("start-end-block"), _) => "css-margin-block-start-end",
            (Some(_), _) => "css-margin-inline-block",
            (_, Some("start-end-inline")) => "css-padding-inline-start-end",
            (_, Some("start-end-block")) => "css-padding-block-start-end",
            (_, Some(_)) => "css-padding-inline-block",
            _ => return border_feature(property),
        },
    };
    Some(feature)
}

fn border_feature(property: &str) -> Option<&'static str> {
    if property.starts_with("margin-") {
        return Some("css-margin");
    }
    if property.starts_with("padding-") {
        return Some("css-padding");
    }
    let rest = property.strip_prefix("border-")?;
    Some(if rest.ends_with("-radius") {
        if rest.starts_with("start-") || rest.starts_with("end-") {
            "css-border-radius-logical"
        } else {
            "css-border-radius"
        }
    } else if matches!(rest, "inline" | "block") {
        "css-border-inline-block"
    } else if let Some(side) = rest.strip_prefix("inline-").or_else(|| rest.strip_prefix("block-"))
    {
        if matches!(side, "start" | "end") {
            "css-border-inline-block-individual"
        } else {
            "css-border-inline-block-longhand"
        }
    } else {
        "css-border"
    })
}

/// The feature a value function belongs to.
fn function_feature(name: &str) -> Option<&'static str> {
    Some(match strip_vendor(name) {
        "rgb" => "css-rgb",
        "rgba" => "css-rgba",
        "calc" => "css-unit-calc",
        "var" => "css-variables",
        "linear-gradient" | "repeating-linear-gradient" => "css-linear-gradient",
        "radial-gradient" | "repeating-radial-gradient" => "css-radial-gradient",
        "conic-gradient" | "repeating-conic-gradient" => "css-conic-gradient",
        "clamp" => "css-function-clamp",
        "min" => "css-function-min",
        "max" => "css-function-max",
        "light-dark" => "css-function-light-dark",
        "lab" | "lch" | "oklab" | "oklch" | "hwb" | "color" => "css-modern-color",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(css: &str) -> Findings {
        let mut findings = Findings::default();
        let data = super::super::data::caniemail().expect("the bundled data");
        let known = |slug: &str| data.feature(slug).is_some();
        Css { findings: &mut findings, known: &known }.sheet(css);
        findings
    }

    fn attribute(css: &str) -> Findings {
        let mut findings = Findings::default();
        let known = |_: &str| true;
        Css { findings: &mut findings, known: &known }.style_attribute(css);
        findings
    }

    fn slugs(findings: &Findings) -> Vec<(&str, usize)> {
        findings.0.iter().map(|(slug, n)| (slug.as_str(), *n)).collect()
    }

    #[test]
    fn declarations_count_properties_and_values() {
        let found = attribute(
            "display: flex; position:absolute; color: rgb(1,2,3) !important; \
             width: calc(100% - 2rem); /* display: grid */ content: 'display: grid'",
        );
        assert_eq!(
            slugs(&found),
            vec![
                ("css-color", 1),
                ("css-content", 1),
                ("css-display", 1),
                ("css-display-flex", 1),
                ("css-important", 1),
                ("css-position", 1),
                ("css-rgb", 1),
                ("css-unit-calc", 1),
                ("css-unit-rem", 1),
                ("css-width", 1),
            ]
        );
    }

    #[test]
    fn sheets_count_at_rules_selectors_and_pseudo_classes() {
        let found = sheet(
            "@media (prefers-color-scheme: dark) { .a > p:hover { margin-top: 0 } }\n\
             a.b::before, #c [d] { color: red } @font-face { font-family: x } \
             @keyframes k { from { opacity: 0 } }",
        );
        let found: std::collections::BTreeMap<_, _> = slugs(&found).into_iter().collect();
        for slug in [
            "css-at-media",
            "css-at-media-prefers-color-scheme",
            "css-selector-class",
            "css-selector-child",
            "css-selector-type",
            "css-pseudo-class-hover",
            "css-margin",
            "css-pseudo-element-before",
            "css-selector-chaining",
            "css-selector-grouping",
            "css-selector-id",
            "css-selector-descendant",
            "css-selector-attribute",
            "css-at-font-face",
            "css-font",
            "css-at-keyframes",
            "css-opacity",
        ] {
            assert!(found.contains_key(slug), "{slug} missing from {found:?}");
        }
        // `from` in @keyframes is no type selector; `p` and `a` are. Only `a.b` chains.
        assert_eq!(found["css-selector-type"], 2, "{found:?}");
        assert_eq!(found["css-selector-chaining"], 1, "{found:?}");
        assert!(!found.contains_key("css-margin-top"));
    }

    #[test]
    fn deep_nesting_is_skipped_not_followed() {
        let deep = format!("width: {}1rem", "calc(".repeat(100_000));
        let found = attribute(&deep);
        // Functions are seen down to MAX_DEPTH, and not read below it.
        assert_eq!(found.0.get("css-unit-calc"), Some(&(MAX_DEPTH + 1)));
        assert!(!found.0.contains_key("css-unit-rem"));
    }

    #[test]
    fn property_families() {
        assert_eq!(family_feature("margin-inline-start"), Some("css-margin-inline-start-end"));
        assert_eq!(family_feature("padding-block"), Some("css-padding-inline-block"));
        assert_eq!(family_feature("border-top-left-radius"), Some("css-border-radius"));
        assert_eq!(family_feature("border-start-end-radius"), Some("css-border-radius-logical"));
        assert_eq!(
            family_feature("border-inline-start"),
            Some("css-border-inline-block-individual")
        );
        assert_eq!(family_feature("border-block-width"), Some("css-border-inline-block-longhand"));
        assert_eq!(family_feature("border-bottom"), Some("css-border"));
        assert_eq!(family_feature("grid-template-columns"), Some("css-grid-template"));
        assert_eq!(family_feature("colour"), None);
    }
}
