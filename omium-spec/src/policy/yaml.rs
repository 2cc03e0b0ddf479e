//! YAML (and JSON, which YAML 1.2 reads too) into a tree that remembers where each node was,
//! and a serde `Deserializer` over that tree whose every error names the line, the column and
//! the path of the node it is about, the bad value, the valid choices and the nearest of them.

use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, DeserializeSeed, Error as _, IntoDeserializer, Visitor};

/// Where a node starts: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Null,
    /// Text and whether it was quoted (a quoted `"3"` is a string, a plain `3` a number).
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    pub at: Location,
}

impl Node {
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".into(),
            Kind::Scalar(s, _) => format!("{s:?}"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// The node at a path of mapping keys and list indexes, e.g. `["policies", "0", "action"]`.
    pub(crate) fn find(&self, path: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s, _) if s == first))
                .and_then(|(_, v)| v.find(rest)),
            Kind::Seq(items) => items.get(first.parse::<usize>().ok()?)?.find(rest),
            _ => None,
        }
    }
}

/// The largest document accepted (policies and workflow specs are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How deep lists and mappings may nest (also through aliases).
pub const MAX_DEPTH: usize = 64;
/// How many nodes a document may have, counting each alias as the nodes it stands for, so a
/// few hundred bytes of nested aliases ("billion laughs") cannot expand to gigabytes.
pub const MAX_NODES: usize = 100_000;

/// Parses one YAML document (an empty input is an empty mapping). The limits above are checked
/// before anything is allocated for what breaks them; each is a problem with line and column.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Problem::at(
            Location { line: 1, column: 1 },
            format!(
                "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES} (1 MiB): split it",
                text.len()
            ),
        ));
    }
    let mut events = Vec::new();
    for ev in Parser::new_from_str(text) {
        match ev {
            Ok((e, span)) => events.push((
                e,
                Location {
                    line: span.start.line(),
                    column: span.start.col() + 1,
                },
            )),
            Err(e) => {
                return Err(Problem::at(
                    Location {
                        line: e.marker().line(),
                        column: e.marker().col() + 1,
                    },
                    // The parser's own nesting limit is above ours: the same problem.
                    if e.info().contains("recursion limit") {
                        too_deep()
                    } else {
                        format!("not valid YAML or JSON: {}", e.info())
                    },
                ));
            }
        }
    }
    let mut b = Builder {
        events: events.into_iter(),
        anchors: Vec::new(),
        docs: 0,
        depth: 0,
        nodes: 0,
    };
    let mut root = None;
    while let Some((e, at)) = b.events.next() {
        match e {
            Event::DocumentStart(_) => {
                b.docs += 1;
                if b.docs > 1 {
                    return Err(Problem::at(at, "expected one document, found a second one (`---`); put each policy in its own file".into()));
                }
                root = Some(b.node()?);
            }
            Event::StreamStart | Event::DocumentEnd | Event::StreamEnd | Event::Nothing => {}
            _ => {
                return Err(Problem::at(
                    at,
                    "unexpected YAML event outside a document".into(),
                ))
            }
        }
    }
    Ok(root.unwrap_or(Node {
        kind: Kind::Map(Vec::new()),
        at: Location { line: 1, column: 1 },
    }))
}

/// An anchored node, with the number of nodes it stands for and how deep it nests.
struct Anchor {
    id: usize,
    node: Node,
    nodes: usize,
    height: usize,
}

struct Builder<'a> {
    events: std::vec::IntoIter<(Event<'a>, Location)>,
    anchors: Vec<Anchor>,
    docs: usize,
    /// Lists and mappings open around the node being built.
    depth: usize,
    /// Nodes built so far, aliases counted by what they expand to.
    nodes: usize,
}

fn too_deep() -> String {
    format!("lists and mappings nest deeper than {MAX_DEPTH} levels here; flatten the document")
}

fn height(node: &Node) -> usize {
    match &node.kind {
        Kind::Null | Kind::Scalar(..) => 0,
        Kind::Seq(items) => 1 + items.iter().map(height).max().unwrap_or(0),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| height(k).max(height(v)))
                .max()
                .unwrap_or(0)
        }
    }
}

impl Builder<'_> {
    /// Counts `n` more nodes, refused past [`MAX_NODES`].
    fn count(&mut self, n: usize, at: Location, what: &str) -> Result<(), Problem> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(Problem::at(
                at,
                format!(
                    "the document has more than {MAX_NODES} nodes{what}; the limit keeps a \
                     small document from expanding without bound: write it out, or split it"
                ),
            ));
        }
        Ok(())
    }

    /// Opens a list or mapping, refused past [`MAX_DEPTH`] levels.
    fn enter(&mut self, at: Location, extra: usize) -> Result<(), Problem> {
        if self.depth + extra > MAX_DEPTH {
            return Err(Problem::at(at, too_deep()));
        }
        Ok(())
    }

    fn node(&mut self) -> Result<Node, Problem> {
        let Some((e, at)) = self.events.next() else {
            return Err(Problem::at(
                Location::default(),
                "the document ends early".into(),
            ));
        };
        if let Event::Alias(id) = e {
            let Some(a) = self.anchors.iter().rev().find(|a| a.id == id) else {
                return Err(Problem::at(at, "alias to an unknown anchor".into()));
            };
            let (n, h, node) = (a.nodes, a.height, a.node.clone());
            self.enter(at, h)?;
            self.count(n, at, " once its aliases are expanded")?;
            return Ok(node);
        }
        self.count(1, at, "")?;
        let start = self.nodes;
        if matches!(e, Event::SequenceStart(..) | Event::MappingStart(..)) {
            self.enter(at, 1)?;
            self.depth += 1;
        }
        let (node, anchor) = match e {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let kind =
                    if !quoted && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                        Kind::Null
                    } else {
                        Kind::Scalar(text.into_owned(), quoted)
                    };
                (Node { kind, at }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                while !matches!(
                    self.events.as_slice().first(),
                    Some((Event::SequenceEnd, _))
                ) {
                    items.push(self.node()?);
                }
                self.events.next();
                self.depth -= 1;
                (
                    Node {
                        kind: Kind::Seq(items),
                        at,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                while !matches!(self.events.as_slice().first(), Some((Event::MappingEnd, _))) {
                    let k = self.node()?;
                    let v = self.node()?;
                    entries.push((k, v));
                }
                self.events.next();
                self.depth -= 1;
                (
                    Node {
                        kind: Kind::Map(entries),
                        at,
                    },
                    anchor,
                )
            }
            _ => return Err(Problem::at(at, "unexpected YAML structure".into())),
        };
        if anchor > 0 {
            self.anchors.push(Anchor {
                id: anchor,
                nodes: self.nodes - start + 1,
                height: height(&node),
                node: node.clone(),
            });
        }
        Ok(node)
    }
}

/// One thing wrong with a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    /// The file it came from, when it came from one.
    pub file: Option<String>,
    pub at: Location,
    /// Dotted path to the node (`policies[0].action`); empty for the document itself.
    pub path: String,
    pub message: String,
    /// The offending value as written.
    pub value: Option<String>,
    /// The valid choices, when there is a fixed set.
    pub expected: Vec<String>,
    /// The nearest valid choice, for a near miss.
    pub suggestion: Option<String>,
}

impl Problem {
    pub(crate) fn at(at: Location, message: String) -> Problem {
        Problem {
            at,
            message,
            ..Problem::default()
        }
    }

    pub(crate) fn choice(value: &str, expected: &[&str], what: &str) -> Problem {
        Problem {
            message: format!("unknown {what} {value:?}"),
            value: Some(value.to_string()),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            suggestion: did_you_mean(value, expected),
            ..Problem::default()
        }
    }

    fn locate(mut self, at: Location, path: &str) -> Problem {
        if self.at.line == 0 {
            self.at = at;
            self.path = path.to_string();
        }
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: ",
            self.file.as_deref().unwrap_or("<policy>"),
            self.at.line,
            self.at.column
        )?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean {s:?}?")?;
        }
        if !self.expected.is_empty() {
            write!(f, " (valid: {})", self.expected.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Problem {
            message: msg.to_string(),
            ..Problem::default()
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Problem::choice(field, expected, "field")
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Problem::choice(variant, expected, "value")
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::custom(format_args!("missing field `{field}`"))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Problem::custom(format_args!("expected {exp}, found {unexp}"))
    }
}

/// The valid choice nearest to `value`, if it is near enough to be a likely typo.
pub fn did_you_mean(value: &str, choices: &[&str]) -> Option<String> {
    let v = value.to_ascii_lowercase();
    // A prefix of a longer name (`timeout` for `timeout_error`) is a near miss too.
    if v.len() >= 3 {
        let prefixed: Vec<&&str> = choices
            .iter()
            .filter(|c| c.to_ascii_lowercase().starts_with(&v))
            .collect();
        if let [only] = prefixed.as_slice() {
            return Some(only.to_string());
        }
    }
    choices
        .iter()
        .map(|c| (levenshtein(&v, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len().max(v.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A node being deserialized, with its path for messages.
pub(crate) struct De<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl<'a> De<'a> {
    pub(crate) fn new(node: &'a Node) -> Self {
        De {
            node,
            path: String::new(),
        }
    }

    fn child(&self, node: &'a Node, key: &str) -> De<'a> {
        let path = if key.starts_with('[') || self.path.is_empty() {
            format!("{}{key}", self.path)
        } else {
            format!("{}.{key}", self.path)
        };
        De { node, path }
    }

    fn err(&self, e: Problem) -> Problem {
        e.locate(self.node.at, &self.path)
    }

    fn scalar(&self, what: &str) -> Result<&'a str, Problem> {
        match &self.node.kind {
            Kind::Scalar(s, _) => Ok(s),
            _ => Err(self.err(Problem::custom(format_args!(
                "expected {what}, found {}",
                self.node.describe()
            )))),
        }
    }

    fn number<T: std::str::FromStr>(&self, what: &str) -> Result<T, Problem> {
        let s = self.scalar(what)?;
        s.trim().replace('_', "").parse::<T>().map_err(|_| {
            let mut p = Problem::custom(format_args!("expected {what}, found {s:?}"));
            p.value = Some(s.to_string());
            self.err(p)
        })
    }
}

macro_rules! number {
    ($($method:ident $visit:ident $t:ty, $what:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
            let n: $t = self.number($what)?;
            v.$visit(n).map_err(|e| self.err(e))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        let r = match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Scalar(s, true) => v.visit_str(s),
            Kind::Scalar(s, false) => {
                if let Some(b) = parse_bool(s) {
                    v.visit_bool(b)
                } else if let Ok(i) = s.parse::<i64>() {
                    v.visit_i64(i)
                } else if let Ok(f) = s.parse::<f64>() {
                    v.visit_f64(f)
                } else {
                    v.visit_str(s)
                }
            }
            Kind::Seq(_) => return self.deserialize_seq(v),
            Kind::Map(_) => return self.deserialize_map(v),
        };
        r.map_err(|e| self.err(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        let s = self.scalar("true or false")?;
        match parse_bool(s) {
            Some(b) => v.visit_bool(b).map_err(|e| self.err(e)),
            None => {
                let mut p = Problem::choice(s, &["true", "false"], "value");
                p.message = format!("expected true or false, found {s:?}");
                Err(self.err(p))
            }
        }
    }

    number! {
        deserialize_i8 visit_i64 i64, "an integer";
        deserialize_i16 visit_i64 i64, "an integer";
        deserialize_i32 visit_i64 i64, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u64 u64, "a non-negative integer";
        deserialize_u16 visit_u64 u64, "a non-negative integer";
        deserialize_u32 visit_u64 u64, "a non-negative integer";
        deserialize_u64 visit_u64 u64, "a non-negative integer";
        deserialize_f32 visit_f64 f64, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        let s = self.scalar("a string")?;
        v.visit_str(s).map_err(|e| self.err(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        match self.node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        v.visit_unit().map_err(|e| self.err(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Problem> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Problem> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        match &self.node.kind {
            Kind::Seq(items) => {
                let r = v.visit_seq(Seq {
                    parent: &self,
                    items: items.iter().enumerate(),
                });
                r.map_err(|e| self.err(e))
            }
            _ => Err(self.err(Problem::custom(format_args!(
                "expected a list, found {}",
                self.node.describe()
            )))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Problem> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Problem> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        match &self.node.kind {
            Kind::Map(entries) => {
                let r = v.visit_map(Map {
                    parent: &self,
                    entries: entries.iter(),
                    value: None,
                });
                r.map_err(|e| self.err(e))
            }
            // An empty section (`retries:` with nothing under it) is an empty mapping.
            Kind::Null => v.visit_map(Map {
                parent: &self,
                entries: [].iter(),
                value: None,
            }),
            _ => Err(self.err(Problem::custom(format_args!(
                "expected a mapping, found {}",
                self.node.describe()
            )))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Problem> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Problem> {
        match &self.node.kind {
            Kind::Scalar(..) => v
                .visit_enum(Variant {
                    de: &self,
                    content: None,
                })
                .map_err(|e| self.err(e)),
            Kind::Map(entries) if entries.len() == 1 => {
                let (k, val) = &entries[0];
                let key_de = self.child(k, "");
                let r = v.visit_enum(Variant {
                    de: &key_de,
                    content: Some(val),
                });
                r.map_err(|e| self.err(e))
            }
            _ => Err(self.err(Problem::custom(format_args!(
                "expected a name, or a mapping with one key (the name) to its settings, found {}",
                self.node.describe()
            )))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Problem> {
        v.visit_unit()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

struct Seq<'p, 'a, I> {
    parent: &'p De<'a>,
    items: I,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for Seq<'_, 'a, I> {
    type Error = Problem;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Problem> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let de = self.parent.child(node, &format!("[{i}]"));
                let at = de.node.at;
                let path = de.path.clone();
                seed.deserialize(de)
                    .map(Some)
                    .map_err(|e| e.locate(at, &path))
            }
        }
    }
}

struct Map<'p, 'a, I> {
    parent: &'p De<'a>,
    entries: I,
    value: Option<De<'a>>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for Map<'_, 'a, I> {
    type Error = Problem;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Problem> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let name = match &k.kind {
            Kind::Scalar(s, _) => s.clone(),
            _ => {
                return Err(Problem::custom("mapping keys must be plain names")
                    .locate(k.at, &self.parent.path));
            }
        };
        let child = self.parent.child(v, &name);
        let key_path = child.path.clone();
        self.value = Some(child);
        let key_de = De {
            node: k,
            path: key_path.clone(),
        };
        seed.deserialize(key_de)
            .map(Some)
            .map_err(|e| e.locate(k.at, &key_path))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Problem> {
        let de = self.value.take().expect("value after key");
        let at = de.node.at;
        let path = de.path.clone();
        seed.deserialize(de).map_err(|e| e.locate(at, &path))
    }
}

struct Variant<'p, 'a> {
    de: &'p De<'a>,
    content: Option<&'a Node>,
}

const EMPTY: Node = Node {
    kind: Kind::Null,
    at: Location { line: 0, column: 0 },
};

impl<'de, 'p, 'a> de::EnumAccess<'de> for Variant<'p, 'a> {
    type Error = Problem;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self), Problem> {
        let name = self.de.scalar("a name")?;
        let v = seed
            .deserialize(name.into_deserializer())
            .map_err(|e: Problem| self.de.err(e))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, '_> {
    type Error = Problem;

    fn unit_variant(self) -> Result<(), Problem> {
        match self.content {
            None
            | Some(Node {
                kind: Kind::Null, ..
            }) => Ok(()),
            Some(n) => Err(Problem::custom(format_args!(
                "{:?} takes no settings, found {}",
                self.de.scalar("a name").unwrap_or_default(),
                n.describe()
            ))
            .locate(n.at, &self.de.path)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Problem> {
        // A bare name (`- pause`) is the variant with default settings.
        let node = self.content.unwrap_or(&EMPTY);
        let name = self.de.scalar("a name")?;
        let de = self.de.child(node, name);
        let (at, path) = (
            if node.at.line == 0 {
                self.de.node.at
            } else {
                node.at
            },
            de.path.clone(),
        );
        seed.deserialize(de).map_err(|e| e.locate(at, &path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Problem> {
        let node = self.content.unwrap_or(&EMPTY);
        de::Deserializer::deserialize_seq(self.de.child(node, ""), v)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Problem> {
        let node = self.content.unwrap_or(&EMPTY);
        let name = self.de.scalar("a name")?;
        de::Deserializer::deserialize_map(self.de.child(node, name), v)
    }
}
