//! The CoRE Link Format ([RFC 6690](https://www.rfc-editor.org/rfc/rfc6690)) as far as a
//! server needs it: link attributes, writing `</path>;attr="value"` lists, and the query
//! filters of `/.well-known/core`
//! ([§4.1](https://www.rfc-editor.org/rfc/rfc6690#section-4.1)).
//!
//! # Values and quoting
//!
//! A value is kept unquoted and unescaped, and quoted when written: `rt`, `if`, `title`,
//! `anchor`, `rel` and `rev` always (their grammar is a quoted-string), any other attribute
//! unless the value is a plain number, so that `ct=0` and `sz=1280` stay bare while
//! `ct="0 41"` is quoted ([RFC 7252 §7.2.1](https://www.rfc-editor.org/rfc/rfc7252#section-7.2.1)).
//! Inside quotes, `"` and `\` are escaped with a backslash.
//!
//! # Filters
//!
//! A filter is one query item `name=pattern`:
//!
//! - `href=/path` matches the link target exactly, `href=/pre*` by prefix;
//! - any other name matches a link whose attribute of that name has the value, either as a
//!   whole or as one of its space-separated words (`rt=Type1` matches `rt="Type1 Type2"`,
//!   `ct=0` matches `ct="0 41"`), or, with a trailing `*`, a value or word that starts with
//!   the pattern;
//! - a name alone (`obs`), or with an empty pattern (`rt=`), matches links that have that
//!   attribute at all.
//!
//! Only the first query item filters; the others are ignored, as libcoap ignores them.

/// Attributes whose grammar in RFC 6690 or RFC 5988 is a quoted-string.
const ALWAYS_QUOTED: &[&str] = &["anchor", "if", "rel", "rev", "rt", "title"];

/// One link attribute: a name, and a value unless it is a flag such as `obs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attr {
    name: String,
    value: Option<String>,
}

/// The link attributes of one resource, in the order they were first set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attrs(Vec<Attr>);

impl Attrs {
    /// Sets `name` to `value`, replacing an earlier value in place.
    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        match self.0.iter_mut().find(|a| a.name == name) {
            Some(attr) => attr.value = value,
            None => self.0.push(Attr {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// Adds the whitespace-separated words of `words` to the space-separated list `name`,
    /// skipping words it already holds.
    pub(crate) fn add_words(&mut self, name: &str, words: &str) {
        let mut list: Vec<String> = self
            .get(name)
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
            .map(str::to_owned)
            .collect();
        for word in words.split_ascii_whitespace() {
            if !list.iter().any(|w| w == word) {
                list.push(word.to_owned());
            }
        }
        self.set(name, Some(list.join(" ")));
    }

    /// Returns the value of `name`; `None` when it is absent or a flag.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.find(name).and_then(|a| a.value.as_deref())
    }

    /// Whether `name` is set (as a flag or with a value).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<&Attr> {
        self.0.iter().find(|a| a.name == name)
    }

    /// Returns the attributes as `;name` and `;name=value` in link-format.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|a| (a.name.as_str(), a.value.as_deref()))
    }
}

/// Whether `name` is a link-param name (RFC 5988 `parmname`).
pub(crate) fn is_parmname(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'&'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Appends one link, `<href>` and its attributes, to `out`.
pub(crate) fn write_link(out: &mut String, href: &str, attrs: &Attrs) {
    out.push('<');
    out.push_str(href);
    out.push('>');
    for (name, value) in attrs.iter() {
        out.push(';');
        out.push_str(name);
        let Some(value) = value else { continue };
        out.push('=');
        let bare = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit())
            && !ALWAYS_QUOTED.contains(&name);
        if bare {
            out.push_str(value);
        } else {
            write_quoted(out, value);
        }
    }
}

/// Appends `value` as a quoted-string, escaping `"` and `\`.
fn write_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Writes the links, in the order given, separated by `,`.
pub(crate) fn render<'a>(links: impl IntoIterator<Item = (&'a str, &'a Attrs)>) -> String {
    let mut out = String::new();
    for (i, (href, attrs)) in links.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_link(&mut out, href, attrs);
    }
    out
}

/// A value pattern: exact, or a prefix when the query item ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    text: String,
    prefix: bool,
}

impl Pattern {
    fn parse(text: &str) -> Self {
        match text.strip_suffix('*') {
            Some(prefix) => Self {
                text: prefix.to_owned(),
                prefix: true,
            },
            None => Self {
                text: text.to_owned(),
                prefix: false,
            },
        }
    }

    fn matches(&self, value: &str) -> bool {
        if self.prefix {
            value.starts_with(&self.text)
        } else {
            value == self.text
        }
    }

    /// Matches the whole value or one of its space-separated words.
    fn matches_list(&self, value: &str) -> bool {
        self.matches(value) || value.split(' ').any(|word| self.matches(word))
    }
}

/// A `/.well-known/core` query filter (RFC 6690 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    /// No filter: every link.
    All,
    /// `href=…`: the link target.
    Href(Pattern),
    /// `name=…`: an attribute's value.
    Value(String, Pattern),
    /// `name` or `name=`: the attribute is present.
    Has(String),
}

impl Filter {
    /// Reads the filter from the request's Uri-Query values: the first item filters, the
    /// others are ignored.
    pub(crate) fn from_query<'q>(mut items: impl Iterator<Item = &'q [u8]>) -> Self {
        let Some(item) = items.next() else {
            return Self::All;
        };
        let item = String::from_utf8_lossy(item);
        let (name, pattern) = item.split_once('=').unwrap_or((&item, ""));
        match (name, pattern) {
            ("", _) | ("href", "") => Self::All,
            ("href", pattern) => Self::Href(Pattern::parse(pattern)),
            (name, "") => Self::Has(name.to_owned()),
            (name, pattern) => Self::Value(name.to_owned(), Pattern::parse(pattern)),
        }
    }

    /// Whether the link to `href` with `attrs` passes the filter.
    pub(crate) fn matches(&self, href: &str, attrs: &Attrs) -> bool {
        match self {
            Self::All => true,
            Self::Href(pattern) => pattern.matches(href),
            Self::Value(name, pattern) => attrs.get(name).is_some_and(|v| pattern.matches_list(v)),
            Self::Has(name) => attrs.find(name).is_some(),
        }
    }
}

/// Formats an attribute list for `Debug` output, as it would appear in a link.
pub(crate) fn debug_attrs(attrs: &Attrs) -> String {
    let mut out = String::new();
    write_link(&mut out, "", attrs);
    // Drop the "<>" of the empty target.
    out.split_off(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(list: &[(&str, Option<&str>)]) -> Attrs {
        let mut a = Attrs::default();
        for (name, value) in list {
            a.set(name, value.map(str::to_owned));
        }
        a
    }

    fn filter(query: &[&str]) -> Filter {
        Filter::from_query(query.iter().map(|q| q.as_bytes()))
    }

    #[test]
    fn writes_links_as_rfc_6690_shows_them() {
        // RFC 6690 §5, first example.
        let sensor = attrs(&[("if", Some("sensor"))]);
        assert_eq!(
            render([("/sensors/temp", &sensor), ("/sensors/light", &sensor)]),
            r#"</sensors/temp>;if="sensor",</sensors/light>;if="sensor""#
        );
        // RFC 6690 §5, the link with several attributes.
        let light = attrs(&[("rt", Some("light-lux")), ("if", Some("sensor"))]);
        assert_eq!(
            render([("/sensors/light", &light)]),
            r#"</sensors/light>;rt="light-lux";if="sensor""#
        );
        assert_eq!(render([]), "");
    }

    #[test]
    fn quoting() {
        let a = attrs(&[
            ("ct", Some("0")),
            ("sz", Some("1280")),
            ("obs", None),
            ("rt", Some("1")),
            ("title", Some(r#"say "hi" \o/"#)),
            ("exp", Some("")),
            ("foo", Some("bar")),
        ]);
        assert_eq!(
            render([("/x", &a)]),
            r#"</x>;ct=0;sz=1280;obs;rt="1";title="say \"hi\" \\o/";exp="";foo="bar""#
        );
        let mut ct = Attrs::default();
        ct.add_words("ct", "0");
        ct.add_words("ct", "41");
        ct.add_words("ct", "0");
        assert_eq!(render([("/x", &ct)]), r#"</x>;ct="0 41""#);
        assert_eq!(debug_attrs(&ct), r#";ct="0 41""#);
    }

    #[test]
    fn set_replaces_in_place_and_add_words_appends() {
        let mut a = attrs(&[("rt", Some("a")), ("title", Some("t"))]);
        a.set("rt", Some("b".into()));
        a.add_words("rt", "c  d c");
        a.add_words("if", "i");
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [
                ("rt", Some("b c d")),
                ("title", Some("t")),
                ("if", Some("i"))
            ]
        );
    }

    #[test]
    fn parmnames() {
        assert!(is_parmname("rt"));
        assert!(is_parmname("x-my.attr_1"));
        assert!(!is_parmname(""));
        assert!(!is_parmname("a b"));
        assert!(!is_parmname("a=b"));
        assert!(!is_parmname("a;b"));
        assert!(!is_parmname("title*"));
    }

    #[test]
    fn filter_forms() {
        assert_eq!(filter(&[]), Filter::All);
        assert_eq!(filter(&[""]), Filter::All);
        assert_eq!(filter(&["href"]), Filter::All);
        assert_eq!(
            filter(&["rt=temp*", "if=sensor"]),
            Filter::Value(
                "rt".into(),
                Pattern {
                    text: "temp".into(),
                    prefix: true
                }
            )
        );
        assert_eq!(filter(&["obs"]), Filter::Has("obs".into()));
        assert_eq!(filter(&["rt="]), Filter::Has("rt".into()));
    }

    #[test]
    fn href_filters() {
        let none = Attrs::default();
        let exact = filter(&["href=/sensors/temp"]);
        assert!(exact.matches("/sensors/temp", &none));
        assert!(!exact.matches("/sensors/temp2", &none));
        assert!(!exact.matches("/sensors", &none));
        let prefix = filter(&["href=/sensors/*"]);
        assert!(prefix.matches("/sensors/temp", &none));
        assert!(!prefix.matches("/sensors", &none));
        assert!(filter(&["href=*"]).matches("/anything", &none));
    }

    #[test]
    fn attribute_filters() {
        let a = attrs(&[
            ("rt", Some("temperature-c temperature-f")),
            ("if", Some("sensor")),
            ("ct", Some("0 41")),
            ("title", Some("Room temperature")),
            ("obs", None),
        ]);
        // RFC 6690 §4.1: a value matches any one of the space-separated values.
        assert!(filter(&["rt=temperature-c"]).matches("/t", &a));
        assert!(filter(&["rt=temperature-f"]).matches("/t", &a));
        assert!(!filter(&["rt=temperature"]).matches("/t", &a));
        assert!(filter(&["rt=temperature*"]).matches("/t", &a));
        assert!(filter(&["rt=*"]).matches("/t", &a));
        assert!(filter(&["if=sensor"]).matches("/t", &a));
        assert!(!filter(&["if=actuator"]).matches("/t", &a));
        assert!(filter(&["ct=0"]).matches("/t", &a));
        assert!(filter(&["ct=41"]).matches("/t", &a));
        assert!(!filter(&["ct=4"]).matches("/t", &a));
        assert!(filter(&["ct=4*"]).matches("/t", &a));
        assert!(filter(&["title=Room temperature"]).matches("/t", &a));
        assert!(filter(&["title=Room"]).matches("/t", &a));
        assert!(filter(&["obs"]).matches("/t", &a));
        assert!(!filter(&["obs=1"]).matches("/t", &a));
        assert!(!filter(&["sz"]).matches("/t", &a));
        assert!(!filter(&["sz=1*"]).matches("/t", &a));
        assert!(!filter(&["obs"]).matches("/t", &Attrs::default()));
    }

    #[test]
    fn only_the_first_item_filters() {
        let a = attrs(&[("rt", Some("a"))]);
        assert!(filter(&["rt=a", "rt=b"]).matches("/x", &a));
        assert!(!filter(&["rt=b", "rt=a"]).matches("/x", &a));
    }
}
